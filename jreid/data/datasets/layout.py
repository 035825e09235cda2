"""Checks and listings shared by the dataset parsers.

Every parser reports a missing or misnamed file the same way: a
`DatasetLayoutError` whose message ends with that dataset's expected layout,
so a user sees what to put where. Listings are sorted so that record order
(and every seeded split drawn from it) is the same on every machine.
"""
from __future__ import annotations

import pathlib
import re
from typing import Iterable, Sequence

import numpy as np

from jreid.data.records import Record, Split
from jreid.errors import ConfigError, DatasetLayoutError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# `PPPP_cC...`: the prefix shared by Market, DukeMTMC-reID, CUHK03-NP, PersonX and VeRi names.
PID_CAMERA = re.compile(r"^(-?\d+)_c(\d+)")
MARKET_SUBDIRS = ("bounding_box_train", "query", "bounding_box_test")


def require_dir(path: pathlib.Path, expected: str) -> pathlib.Path:
  if not path.is_dir():
    raise DatasetLayoutError(f"missing folder {path}: {expected}")
  return path


def require_file(path: pathlib.Path, expected: str) -> pathlib.Path:
  if not path.is_file():
    raise DatasetLayoutError(f"missing file {path}: {expected}")
  return path


def first_existing(candidates: Sequence[pathlib.Path], expected: str) -> pathlib.Path:
  """The first folder that exists; releases and re-packagings nest folders differently."""
  for path in candidates:
    if path.is_dir():
      return path
  raise DatasetLayoutError(
      f"none of {[str(p) for p in candidates]} exists: {expected}")


def images(folder: pathlib.Path, expected: str, *, recursive: bool = False) -> list[pathlib.Path]:
  """Image files in `folder` (sorted); hidden files and non-images are skipped."""
  require_dir(folder, expected)
  found = folder.rglob("*") if recursive else folder.iterdir()
  paths = sorted(p for p in found if p.is_file() and not p.name.startswith(".")
                 and p.suffix.lower() in IMAGE_SUFFIXES)
  if not paths:
    raise DatasetLayoutError(f"no images in {folder}: {expected}")
  return paths


def read_rows(path: pathlib.Path, expected: str, *, columns: int,
              sep: str | None = None) -> list[list[str]]:
  """Non-empty lines of a list file, split into at least `columns` fields."""
  rows = []
  for number, line in enumerate(require_file(path, expected).read_text().splitlines(), 1):
    if not line.strip():
      continue
    fields = [f.strip() for f in line.strip().split(sep)]
    if len(fields) < columns:
      raise DatasetLayoutError(
          f"{path}:{number}: expected {columns} fields in {line!r}: {expected}")
    rows.append(fields)
  if not rows:
    raise DatasetLayoutError(f"empty list file {path}: {expected}")
  return rows


def to_int(text: str, where: str, expected: str) -> int:
  try:
    return int(text)
  except ValueError:
    raise DatasetLayoutError(f"{where}: {text!r} is not a number: {expected}") from None


def dense(values: Iterable) -> dict:
  """Sorted distinct values -> 0..K-1; used where raw camera ids are not 0-based."""
  return {v: i for i, v in enumerate(sorted(set(values)))}


def draw(ids: Sequence[int], count: int, split: int, salt: int) -> list[int]:
  """`count` of `ids`, drawn by a generator seeded with (salt, split).

  The "10 (or 20) random splits" protocols of the small sets were drawn once
  by their authors and never published as files with the images, so jreid
  draws them as a fixed function of the split index: split k is the same
  everywhere, but it is not the split k of another codebase.
  """
  if split < 0:
    raise ConfigError(f"split index must be >= 0, got {split}")
  rng = np.random.default_rng([salt, split])
  chosen = rng.choice(len(ids), size=count, replace=False)
  return sorted(ids[i] for i in chosen)


def market_style(root: pathlib.Path, expected: str, *, domain: int,
                 subdirs: Sequence[str] = MARKET_SUBDIRS) -> Split:
  """train/query/gallery folders of `PPPP_cC...` images.

  Junk (pid -1) is dropped everywhere; distractors (pid 0) are kept in the
  gallery only, as the Market-1501 evaluation code does.
  """
  require_dir(root, expected)

  def read(sub: str, keep_distractors: bool) -> list[Record]:
    records = []
    for path in images(root / sub, expected):
      match = PID_CAMERA.match(path.name)
      if match is None:
        raise DatasetLayoutError(f"unexpected file name {path}: {expected}")
      pid, cam = int(match.group(1)), int(match.group(2))
      if pid == -1 or (pid == 0 and not keep_distractors):
        continue
      records.append(Record(str(path), pid, cam - 1, domain))
    return records

  train, query, gallery = subdirs
  return Split(read(train, False), read(query, False), read(gallery, True))
