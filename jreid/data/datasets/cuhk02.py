"""CUHK02 (Li and Wang, CVPR 2013).

    <root>/Dataset/P1/cam1/*.png, P1/cam2/*.png, ..., P5/cam1, P5/cam2
    (<root>/P1 ... P5 without the Dataset/ level is accepted too)

7,264 images of 1,816 persons from five camera pairs (971, 306, 107, 193 and
239 persons in P1-P5), two images per person per camera. P1 is CUHK01 itself.
File names start with the person number followed by ``_``; person numbers
restart in every pair, so a training id is the (pair, number) couple, mapped to
0..N-1 in sorted order. Protocol (torchreid, the lifelong "unseen" sets): train
on P1-P4, test on P5 with query = cam1 and gallery = cam2. Each pair has its
own two cameras, stored 0-based as 2 * (pair - 1) + (cam - 1), so P5's are 8
and 9. Nothing needs an id rule: cameras come from the folder names and ids
from sorted order, and the set has no junk or distractor ids.
"""
from __future__ import annotations

import pathlib

from jreid.data.datasets import layout
from jreid.data.records import Record, Split
from jreid.errors import DatasetLayoutError

PAIRS = ("P1", "P2", "P3", "P4", "P5")
TEST_PAIR = "P5"
EXPECTED_LAYOUT = (
    "expected cuhk02/Dataset/P1 ... P5 (or cuhk02/P1 ... P5), each with cam1/ and cam2/ "
    "holding .png images whose names start with the person number and '_'")


def _person(path: pathlib.Path) -> str:
  stem, sep, _ = path.name.partition("_")
  if not sep or not stem:
    raise DatasetLayoutError(f"unexpected file name {path}: {EXPECTED_LAYOUT}")
  return stem


def load(root: str | pathlib.Path, *, domain: int = 0) -> Split:
  root = pathlib.Path(root).expanduser()
  folder = root / "Dataset" if (root / "Dataset").is_dir() else root
  found = []  # (pair, person, camid, path)
  for p, pair in enumerate(PAIRS):
    for c, cam in enumerate(("cam1", "cam2")):
      for path in layout.images(folder / pair / cam, EXPECTED_LAYOUT):
        found.append((pair, _person(path), 2 * p + c, path))
  train_label = layout.dense((pair, person) for pair, person, _, _ in found if pair != TEST_PAIR)
  test_label = layout.dense(person for pair, person, _, _ in found if pair == TEST_PAIR)
  train, query, gallery = [], [], []
  for pair, person, camid, path in found:
    if pair != TEST_PAIR:
      train.append(Record(str(path), train_label[pair, person], camid, domain))
    else:
      (query if camid % 2 == 0 else gallery).append(
          Record(str(path), test_label[person], camid, domain))
  return Split(train, query, gallery)
