"""QMUL GRID (Loy et al., CVPR 2009 / IJCV 2013), the underground-station set.

    <root>/probe/*.jpeg              250 images, ids 0001-0250
    <root>/gallery/*.jpeg          1,025 images: the 250 ids + 775 distractors (id 0000)
    <root>/features_and_partitions.mat   trainIdxAll: the 10 official splits

8 disjoint cameras. Names are ``PPPP_C_FFFFF_X_Y_W_H.jpeg`` (id, camera 1-8,
frame, box); camera is stored 0-based. Protocol: the 10 splits of the .mat
file put 125 ids in training (their probe and gallery images); the other
125 ids form the test, query from probe/ and gallery from gallery/ together
with all 775 distractors (id 0, kept in the gallery as Market-1501's
distractors are). Split 0 is the default. ``trainIdxAll`` holds one MATLAB
struct per split whose third field is the row of training ids, which is
where this reader looks (torchreid's does the same).

Refused, naming the file: camera 0 (cameras are 1-8), a negative id, and id
0 in probe/ (distractors are gallery images only).

Reading the .mat file needs scipy; it is imported only here, and a missing
scipy is reported with what to install.
"""
from __future__ import annotations

import pathlib

import numpy as np

from jreid.data.datasets import layout
from jreid.data.records import Record, Split
from jreid.errors import ConfigError, DatasetLayoutError

NUM_SPLITS = 10
SPLIT_FILE = "features_and_partitions.mat"
EXPECTED_LAYOUT = (
    "expected underground_reid/probe/ and underground_reid/gallery/ holding images named like "
    f"0001_1_25004_107_32_106_221.jpeg, and underground_reid/{SPLIT_FILE}")


def train_ids(mat_path: pathlib.Path, split: int) -> set[int]:
  try:
    from scipy.io import loadmat  # Optional: only GRID's split file needs it.
  except ImportError:
    raise DatasetLayoutError(f"reading {mat_path} needs scipy: pip install scipy") from None
  layout.require_file(mat_path, EXPECTED_LAYOUT)
  try:
    splits = loadmat(str(mat_path))["trainIdxAll"].ravel()
    ids = np.asarray(splits[split][0][0][2]).ravel()
  except (KeyError, IndexError, ValueError, TypeError) as err:
    raise DatasetLayoutError(f"{mat_path} has no trainIdxAll[{split}] struct with the "
                             f"training ids as third field ({err}): {EXPECTED_LAYOUT}") from None
  return {int(i) for i in ids}


def read(folder: pathlib.Path, domain: int, *, distractors: bool) -> list[Record]:
  """`distractors`: whether id 0 (GRID's distractors) may appear, i.e. the gallery."""
  records = []
  for path in layout.images(folder, EXPECTED_LAYOUT):
    fields = path.name.split("_")
    if len(fields) < 3:
      raise DatasetLayoutError(f"unexpected file name {path}: {EXPECTED_LAYOUT}")
    where = str(path)
    pid = layout.person_id(layout.to_int(fields[0], where, EXPECTED_LAYOUT), where,
                           EXPECTED_LAYOUT, first=0 if distractors else 1)
    camid = layout.camera(layout.to_int(fields[1], where, EXPECTED_LAYOUT), where, EXPECTED_LAYOUT)
    records.append(Record(str(path), pid, camid, domain))
  return records


def load(root: str | pathlib.Path, *, split: int = 0, domain: int = 0) -> Split:
  if not 0 <= split < NUM_SPLITS:
    raise ConfigError(f"GRID has splits 0..{NUM_SPLITS - 1}, got {split}")
  root = layout.require_dir(pathlib.Path(root).expanduser(), EXPECTED_LAYOUT)
  probe = read(root / "probe", domain, distractors=False)
  gallery = read(root / "gallery", domain, distractors=True)
  train = train_ids(root / SPLIT_FILE, split)
  return Split(train=[r for r in probe + gallery if r.pid in train],
               query=[r for r in probe if r.pid not in train],
               gallery=[r for r in gallery if r.pid not in train])
