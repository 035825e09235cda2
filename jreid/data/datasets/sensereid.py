"""SenseReID (Zhao et al., Spindle Net, CVPR 2017): a test-only set.

    <root>/test_probe/    1,040 images, 522 ids
    <root>/test_gallery/  3,388 images, 1,717 ids (the query ids + distractor ids)

Names are ``PPPPPPP_CC.jpg`` (7-digit person, 2-digit camera). There is no
training split: `train` is empty. Person ids are kept as written (they are
shared between probe and gallery). Camera numbers are mapped to 0..K-1 in
sorted order over both folders, which makes them 0-based whatever the release's
first camera number is, so no camera number is refused; ids are the pattern's
unsigned digits (no junk id).
"""
from __future__ import annotations

import pathlib
import re

from jreid.data.datasets import layout
from jreid.data.records import Record, Split
from jreid.errors import DatasetLayoutError

NAME_PATTERN = re.compile(r"^(\d+)_(\d+)\.jpe?g$", re.IGNORECASE)
EXPECTED_LAYOUT = (
    "expected SenseReID/test_probe/ and SenseReID/test_gallery/ holding images named "
    "like 0000123_01.jpg")


def _parse(folder: pathlib.Path) -> list[tuple[pathlib.Path, int, int]]:
  parsed = []
  for path in layout.images(folder, EXPECTED_LAYOUT):
    match = NAME_PATTERN.match(path.name)
    if match is None:
      raise DatasetLayoutError(f"unexpected file name {path}: {EXPECTED_LAYOUT}")
    parsed.append((path, int(match.group(1)), int(match.group(2))))
  return parsed


def load(root: str | pathlib.Path, *, domain: int = 0) -> Split:
  root = pathlib.Path(root).expanduser()
  probe, gallery = _parse(root / "test_probe"), _parse(root / "test_gallery")
  camera = layout.dense(cam for _, _, cam in probe + gallery)
  return Split(train=[],
               query=[Record(str(p), pid, camera[c], domain) for p, pid, c in probe],
               gallery=[Record(str(p), pid, camera[c], domain) for p, pid, c in gallery])
