"""Checks and listings shared by the dataset parsers.

Every parser reports a missing or misnamed file the same way: a
`DatasetLayoutError` whose message ends with that dataset's expected layout,
so a user sees what to put where. Listings are sorted so that record order
(and every seeded split drawn from it) is the same on every machine.

Ids and cameras are checked where a dataset defines them, because a wrong
one is not an error later, only wrong numbers: a camera 0 of a set numbered
from 1 would be stored as -1 and match no query's camera, so the
same-id-same-camera removal would silently stop (`camera`); a pid below the
set's first id would train as one more identity or be scored as a person
(`person_id`, `market_pid`). Each reader's docstring says its rule.
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
JUNK = -1        # Market-1501's junk (bad boxes, body parts): outside the protocol, dropped
DISTRACTOR = 0   # Market-1501's distractors (no person, or a stranger): gallery only


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


def camera(number: int, where: str, expected: str, *, label: str | None = None) -> int:
  """The 0-based camera of a dataset that numbers its cameras 1, 2, ...; 0 is refused.

  `label` is how the name writes it (`c0`), for the message; `where` names the file.
  No upper bound: copies and SynthPerson's multi-domain sets number further.
  """
  if number < 1:
    raise DatasetLayoutError(f"{where}: camera {label or number} does not exist, this dataset "
                             f"numbers its cameras from 1: {expected}")
  return number - 1


def person_id(pid: int, where: str, expected: str, *, first: int = 0) -> int:
  """`pid` of a dataset whose ids start at `first` and that has no junk id; lower ones are refused."""
  if pid < first:
    raise DatasetLayoutError(f"{where}: id {pid} is not an id of this dataset (ids start at "
                             f"{first} and there is no junk id): {expected}")
  return pid


def market_pid(pid: int, where: str, expected: str, *, gallery: bool) -> int | None:
  """`pid` under Market-1501's convention, or None for an image the protocol drops.

  -1 marks junk and is dropped in every folder; 0 marks a distractor, kept in
  the gallery (where it can only be a wrong match) and refused in train and
  query, where it would train as a person or be scored against the other
  distractors; ids below -1 do not exist.
  """
  if pid == JUNK:
    return None
  if pid < JUNK:
    raise DatasetLayoutError(f"{where}: person id {pid} does not exist (ids are >= 0, and -1 "
                             f"marks junk images): {expected}")
  if pid == DISTRACTOR and not gallery:
    raise DatasetLayoutError(f"{where}: person id 0 marks a gallery distractor, which belongs "
                             f"in the gallery folder only (persons are numbered from 1): {expected}")
  return pid


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
  """train/query/gallery folders of `PPPP_cC...` images, under Market-1501's id rules.

  Cameras are numbered from c1 (`camera`); junk (pid -1) is dropped
  everywhere and distractors (pid 0) are kept in the gallery only, as the
  Market-1501 evaluation code does (`market_pid`): a pid 0 in train or query,
  or one below -1, is refused.
  """
  require_dir(root, expected)

  def read(sub: str, gallery: bool) -> list[Record]:
    records = []
    for path in images(root / sub, expected):
      match = PID_CAMERA.match(path.name)
      if match is None:
        raise DatasetLayoutError(f"unexpected file name {path}: {expected}")
      cam = camera(int(match.group(2)), str(path), expected, label=f"c{match.group(2)}")
      pid = market_pid(int(match.group(1)), str(path), expected, gallery=gallery)
      if pid is None:
        continue
      records.append(Record(str(path), pid, cam, domain))
    return records

  train, query, gallery = subdirs
  return Split(read(train, False), read(query, False), read(gallery, True))
