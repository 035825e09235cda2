"""CUHK-SYSU for ReID: person crops of the CUHK-SYSU search set (Xiao et al., CVPR 2017).

    <root>/train/    15,088 crops, 5,532 ids  (persons of annotation/test/train_test/Train.mat)
    <root>/query/     2,900 crops, 2,900 ids  (the query box of each TestG50 entry)
    <root>/gallery/   5,447 crops, 2,900 ids  (the same persons' boxes in their 50-image galleries)
    <root>/combine/   (optional) crops of every annotated person; not read

This is the ``cuhksysu4reid`` folder that the LReID benchmark's preprocessing
(Pu et al., CVPR 2021) writes from the raw set, and the protocol DASA and
the other lifelong works use. Assumed crop names, as that preprocessing
writes them: ``PPPPP_sNNNN_IIIIIII_H.jpg`` = person id (the number of the
``pNNNN`` id name, 5 digits), source scene image ``sNNNN.jpg``, running crop
index, hard flag. Only the person id is read.

The set comes from street snaps and movie frames with no camera labels. The
LReID code gives every crop camera 0; here query crops get camera 0 and gallery
crops camera 1, because with one shared camera the standard
same-id-same-camera rule would delete every true match. Train crops get
camera 0. Gallery boxes without a match to the query (background persons of
the gallery images) are not part of the protocol and are not in the folder.
No id rule is needed: the pattern's id has no sign and cameras are assigned,
not read.
"""
from __future__ import annotations

import pathlib
import re

from jreid.data.datasets import layout
from jreid.data.records import Record, Split
from jreid.errors import DatasetLayoutError

NAME_PATTERN = re.compile(r"^(\d+)_s(\d+)_(\d+)_(\d+)\.jpe?g$", re.IGNORECASE)
EXPECTED_LAYOUT = (
    "expected cuhksysu4reid/train/, query/, gallery/ (the LReID preprocessing of CUHK-SYSU) "
    "holding crops named like 00015_s12345_0000123_0.jpg")


def read(folder: pathlib.Path, camid: int, domain: int) -> list[Record]:
  records = []
  for path in layout.images(folder, EXPECTED_LAYOUT):
    match = NAME_PATTERN.match(path.name)
    if match is None:
      raise DatasetLayoutError(f"unexpected file name {path}: {EXPECTED_LAYOUT}")
    records.append(Record(str(path), int(match.group(1)), camid, domain))
  return records


def load(root: str | pathlib.Path, *, domain: int = 0) -> Split:
  root = layout.require_dir(pathlib.Path(root).expanduser(), EXPECTED_LAYOUT)
  return Split(train=read(root / "train", 0, domain), query=read(root / "query", 0, domain),
               gallery=read(root / "gallery", 1, domain))
