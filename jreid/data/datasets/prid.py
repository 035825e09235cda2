"""PRID2011, single-shot version (Hirzer et al., SCIA 2011).

    <root>/single_shot/cam_a/person_0001.png ... person_0385.png   385 persons
    <root>/single_shot/cam_b/person_0001.png ... person_0749.png   749 persons
    (<root>/prid_2011/single_shot/ is accepted too)

One image per person per camera, two static outdoor cameras. Only persons
0001-0200 appear in both cameras; a number above 200 is a *different* person
in cam_a than in cam_b. Protocol (Hirzer et al., as torchreid implements it):
10 random splits put 100 of the 200 shared persons in training (both
images); query is cam_a of the other 100, and the gallery is cam_b of those
100 plus the 549 cam_b-only persons 0201-0749 as distractors (649 images).
cam_a persons above 200 are unused. The split is a fixed function of its index
(`layout.draw`), split 0 by default. Cameras: cam_a 0, cam_b 1 (the folders).
Person numbers are the pattern's unsigned digits and the distractors are
ordinary numbers, so there is no junk id to check.
"""
from __future__ import annotations

import pathlib
import re

from jreid.data.datasets import layout
from jreid.data.records import Record, Split
from jreid.errors import ConfigError, DatasetLayoutError

NUM_SPLITS = 10
SHARED = 200  # persons 1..200 are seen by both cameras
NAME_PATTERN = re.compile(r"^person_(\d+)\.png$", re.IGNORECASE)
EXPECTED_LAYOUT = (
    "expected prid_2011/single_shot/cam_a/ and single_shot/cam_b/ holding images named "
    "like person_0001.png")


def read(folder: pathlib.Path) -> dict[int, pathlib.Path]:
  found = {}
  for path in layout.images(folder, EXPECTED_LAYOUT):
    match = NAME_PATTERN.match(path.name)
    if match is None:
      raise DatasetLayoutError(f"unexpected file name {path}: {EXPECTED_LAYOUT}")
    found[int(match.group(1))] = path
  return found


def load(root: str | pathlib.Path, *, split: int = 0, domain: int = 0) -> Split:
  if not 0 <= split < NUM_SPLITS:
    raise ConfigError(f"PRID2011 has splits 0..{NUM_SPLITS - 1}, got {split}")
  root = pathlib.Path(root).expanduser()
  folder = layout.first_existing([root / "single_shot", root / "prid_2011" / "single_shot"],
                                 EXPECTED_LAYOUT)
  cam_a, cam_b = read(folder / "cam_a"), read(folder / "cam_b")
  shared = sorted(p for p in cam_a if p <= SHARED and p in cam_b)
  if len(shared) < 2:
    raise DatasetLayoutError(
        f"fewer than two persons 0001-0200 in both cameras: {EXPECTED_LAYOUT}")
  train_ids = set(layout.draw(shared, len(shared) // 2, split, salt=0x9121))
  train, query, gallery = [], [], []
  for pid in shared:
    if pid in train_ids:
      train += [Record(str(cam_a[pid]), pid, 0, domain), Record(str(cam_b[pid]), pid, 1, domain)]
    else:
      query.append(Record(str(cam_a[pid]), pid, 0, domain))
      gallery.append(Record(str(cam_b[pid]), pid, 1, domain))
  gallery += [Record(str(cam_b[pid]), pid, 1, domain) for pid in sorted(cam_b) if pid > SHARED]
  return Split(train, query, gallery)
