"""CUHK01 (Li, Zhao and Wang, ACCV 2012).

    <root>/campus/NNNNIII.png   3,884 images: 971 persons x 4 (person NNNN, image III)

Two disjoint campus cameras; images 001-002 of a person come from camera A
and 003-004 from camera B, so the camera is (III - 1) // 2, 0-based. Any other
image number (000, 005, ...) is refused with the file name: it would make a
camera -1 or 2, which is neither query nor gallery.
Protocol (as torchreid and the DG/lifelong benchmarks use it): 485 persons
for training and 486 for testing, query = the two camera-A images and gallery
= the two camera-B images of each test person. Ten random splits; the split
is a fixed function of its index (`layout.draw`), split 0 by default.
"""
from __future__ import annotations

import pathlib
import re

from jreid.data.datasets import layout
from jreid.data.records import Record, Split
from jreid.errors import ConfigError, DatasetLayoutError

NUM_SPLITS = 10
NAME_PATTERN = re.compile(r"^(\d{4})(\d{3})\.png$", re.IGNORECASE)
EXPECTED_LAYOUT = (
    "expected cuhk01/campus/ holding images named like 0001001.png (person, image 1-4)")


def load(root: str | pathlib.Path, *, split: int = 0, domain: int = 0) -> Split:
  if not 0 <= split < NUM_SPLITS:
    raise ConfigError(f"CUHK01 has splits 0..{NUM_SPLITS - 1}, got {split}")
  records = []
  for path in layout.images(pathlib.Path(root).expanduser() / "campus", EXPECTED_LAYOUT):
    match = NAME_PATTERN.match(path.name)
    if match is None:
      raise DatasetLayoutError(f"unexpected file name {path}: {EXPECTED_LAYOUT}")
    image = int(match.group(2))
    if not 1 <= image <= 4:
      raise DatasetLayoutError(f"{path}: image number {match.group(2)} does not exist, CUHK01 "
                               f"numbers each person's images 001-004: {EXPECTED_LAYOUT}")
    camid = (image - 1) // 2  # images 1-2: camera A, 3-4: camera B
    records.append(Record(str(path), int(match.group(1)), camid, domain))
  pids = sorted({r.pid for r in records})
  # 971 // 2 = 485 train persons, the standard 485/486 split.
  train_ids = set(layout.draw(pids, len(pids) // 2, split, salt=0xC01))
  return Split(train=[r for r in records if r.pid in train_ids],
               query=[r for r in records if r.pid not in train_ids and r.camid == 0],
               gallery=[r for r in records if r.pid not in train_ids and r.camid == 1])
