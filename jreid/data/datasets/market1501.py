"""Market-1501 (Zheng et al., ICCV 2015) in its official on-disk layout.

    <root>/bounding_box_train/  12,936 images, 751 ids, 6 cameras
    <root>/query/                3,368 images, 750 ids
    <root>/bounding_box_test/   19,732 images (750 ids + 0000 distractors + -1 junk)

File names are ``PPPP_cCsS_FFFFFF_NN.jpg``: person id, camera, sequence, frame,
box. The official protocol ignores junk (pid -1) images entirely and keeps the
distractors (pid 0) in the gallery, where they can only be wrong matches.
Cameras are stored 0-based. SynthPerson writes exactly this layout.

Refused, with the file name and this layout: camera ``c0`` (cameras are
numbered from c1; stored as -1 it would match no query's camera and the
same-camera removal would silently stop), a pid below -1, and pid 0 outside
bounding_box_test (the real set has distractors only in the gallery; see
`layout.market_pid`). Entries that are not files are skipped, as every
reader's listing does.
"""
from __future__ import annotations

import pathlib
import re

from jreid.data.datasets import layout
from jreid.data.records import Record, Split
from jreid.errors import DatasetLayoutError

NAME_PATTERN = re.compile(r"^(-?\d+)_c(\d+)s(\d+)_(\d+)_(\d+)\.(jpg|jpeg|png)$", re.IGNORECASE)
SUBDIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
EXPECTED_LAYOUT = (
    "expected <root>/bounding_box_train/, <root>/query/, <root>/bounding_box_test/ "
    "holding images named like 0002_c1s1_000451_03.jpg")


def parse_name(name: str, where: str | None = None) -> tuple[int, int]:
  """Returns (pid, camid 0-based) from a Market-style file name (`where`: the path, for errors)."""
  match = NAME_PATTERN.match(name)
  if match is None:
    raise DatasetLayoutError(f"unexpected file name {where or repr(name)}: {EXPECTED_LAYOUT}")
  camid = layout.camera(int(match.group(2)), where or repr(name), EXPECTED_LAYOUT,
                        label=f"c{match.group(2)}")
  return int(match.group(1)), camid


def read_folder(folder: pathlib.Path, *, domain: int, keep_distractors: bool) -> list[Record]:
  """Parses one split folder in sorted (deterministic) order; `keep_distractors`: the gallery."""
  if not folder.is_dir():
    raise DatasetLayoutError(f"missing folder {folder}: {EXPECTED_LAYOUT}")
  records = []
  for path in sorted(folder.iterdir()):
    if (path.name.startswith(".") or path.suffix.lower() not in (".jpg", ".jpeg", ".png")
        or not path.is_file()):
      continue
    pid, camid = parse_name(path.name, str(path))
    pid = layout.market_pid(pid, str(path), EXPECTED_LAYOUT, gallery=keep_distractors)
    if pid is None:
      continue
    records.append(Record(str(path), pid, camid, domain))
  if not records:
    raise DatasetLayoutError(f"no images in {folder}: {EXPECTED_LAYOUT}")
  return records


def load(root: str | pathlib.Path, *, domain: int = 0) -> Split:
  root = pathlib.Path(root).expanduser()
  if not root.is_dir():
    raise DatasetLayoutError(f"dataset folder {root} does not exist: {EXPECTED_LAYOUT}")
  return Split(
      train=read_folder(root / SUBDIRS["train"], domain=domain, keep_distractors=False),
      query=read_folder(root / SUBDIRS["query"], domain=domain, keep_distractors=False),
      gallery=read_folder(root / SUBDIRS["gallery"], domain=domain, keep_distractors=True),
  )
