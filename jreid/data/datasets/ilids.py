"""QMUL iLIDS-ReID / i-LIDS Pedestrian (Zheng, Gong and Xiang, BMVC 2009).

    <root>/i-LIDS_Pedestrian/Persons/NNNNIII.jpg   476 images of 119 persons
    (<root>/Persons/ is accepted too)

Images from a busy airport arrival hall, 2 to 8 per person (4 on average),
named person NNNN + image III. There are no camera labels; as torchreid does,
the image number stands in for the camera (camid = III - 1), so a query
never shares a "camera" with its gallery match. Image numbers start at 001;
000 (a camera -1) is refused with the file name.

Protocol (torchreid, the lifelong "unseen" sets): 10 random splits of the
119 persons into 59 for training (all their images) and 60 for testing; for
each test person two images are drawn, one query and one gallery. Both the
person split and the image draw are fixed functions of the split index
(split 0 by default). A test person with a single image (none in the real
set) only goes to the gallery.
"""
from __future__ import annotations

import collections
import pathlib
import re

import numpy as np

from jreid.data.datasets import layout
from jreid.data.records import Record, Split
from jreid.errors import ConfigError, DatasetLayoutError

NUM_SPLITS = 10
SALT = 0x11D5
NAME_PATTERN = re.compile(r"^(\d{4})(\d{3})\.jpe?g$", re.IGNORECASE)
EXPECTED_LAYOUT = (
    "expected ilids/i-LIDS_Pedestrian/Persons/ (or ilids/Persons/) holding images named "
    "like 0001001.jpg (person, image)")


def load(root: str | pathlib.Path, *, split: int = 0, domain: int = 0) -> Split:
  if not 0 <= split < NUM_SPLITS:
    raise ConfigError(f"iLIDS has splits 0..{NUM_SPLITS - 1}, got {split}")
  root = pathlib.Path(root).expanduser()
  folder = layout.first_existing([root / "i-LIDS_Pedestrian" / "Persons", root / "Persons"],
                                 EXPECTED_LAYOUT)
  by_person = collections.defaultdict(list)
  for path in layout.images(folder, EXPECTED_LAYOUT):
    match = NAME_PATTERN.match(path.name)
    if match is None:
      raise DatasetLayoutError(f"unexpected file name {path}: {EXPECTED_LAYOUT}")
    pid = int(match.group(1))
    camid = layout.camera(int(match.group(2)), str(path), EXPECTED_LAYOUT,
                          label=f"(image number) {match.group(2)}")
    by_person[pid].append(Record(str(path), pid, camid, domain))
  pids = sorted(by_person)
  train_ids = set(layout.draw(pids, len(pids) // 2, split, salt=SALT))
  train, query, gallery = [], [], []
  for pid in pids:
    records = by_person[pid]
    if pid in train_ids:
      train += records
    elif len(records) == 1:
      gallery += records
    else:
      rng = np.random.default_rng([SALT, split, pid])
      first, second = rng.choice(len(records), 2, replace=False)
      query.append(records[first])
      gallery.append(records[second])
  return Split(train, query, gallery)
