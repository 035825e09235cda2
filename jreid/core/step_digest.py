"""A digest of every file of a checkpoint step, written after orbax finalised it, checked on read.

Orbax has no checksum: a flipped byte in an array file restores without
complaint and a run then trains on damaged weights. The digest (size and
SHA-256 of each file) makes any change to a step, or a file added or lost,
an error naming the file.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
from concurrent import futures

from jreid.core import reporting

DIGEST_FILE = "jreid_digest.json"
DIGEST_FORMAT = "jreid checkpoint digest 1"


def _file_entry(path: pathlib.Path) -> list:
  with open(path, "rb") as stream:
    return [os.fstat(stream.fileno()).st_size, hashlib.file_digest(stream, "sha256").hexdigest()]


def _step_files(folder: pathlib.Path) -> list[str]:
  """Every file below a step folder, relative and '/'-separated; the digest (and its temporary) aside."""
  names = (path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
  return sorted(name for name in names
                if name != DIGEST_FILE and not name.startswith(f".{DIGEST_FILE}."))


def _hash_files(folder: pathlib.Path, names: list[str]) -> dict[str, list]:
  """name -> [bytes, sha256]; hashlib releases the GIL, so threads hash a step's big files side by side."""
  with futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
    return dict(zip(names, pool.map(lambda name: _file_entry(folder / name), names)))


def write_digest(folder: str | pathlib.Path) -> pathlib.Path:
  """Records every file of a finalised step folder (size and SHA-256) in its `DIGEST_FILE`."""
  folder = pathlib.Path(folder)
  files = _hash_files(folder, _step_files(folder))
  reporting.write_json_atomic(folder / DIGEST_FILE, {"format": DIGEST_FORMAT, "hash": "sha256",
                                                     "files": files})
  return folder / DIGEST_FILE


def _read_digest(path: pathlib.Path) -> dict[str, list]:
  """The digest's name -> [bytes, sha256]; ValueError if it is not a digest this jreid wrote."""
  try:
    payload = json.loads(path.read_bytes())
  except (OSError, UnicodeDecodeError) as err:
    raise ValueError(str(err)) from None
  if not isinstance(payload, dict) or payload.get("format") != DIGEST_FORMAT:
    raise ValueError(f"not a {DIGEST_FORMAT!r} file")
  files = payload.get("files")
  if not isinstance(files, dict) or not all(
      isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int)
      and isinstance(entry[1], str) for entry in files.values()):
    raise ValueError("its 'files' entry is not a map of name -> [bytes, sha256]")
  return files


def step_problem(folder: str | pathlib.Path) -> tuple[str | None, bool]:
  """(what is wrong with a step folder, or None; whether its digest verified every file).

  Sizes are compared before anything is hashed, so a truncated file costs no read.
  """
  folder = pathlib.Path(folder)
  try:
    return _step_problem(folder)
  except OSError as err:  # an unreadable file or folder (permissions, I/O error)
    where = pathlib.Path(err.filename) if err.filename else folder
    name = where.relative_to(folder).as_posix() if where.is_relative_to(folder) else str(where)
    return f"{name or '.'} cannot be read ({err.strerror or err})", False


def _step_problem(folder: pathlib.Path) -> tuple[str | None, bool]:
  if not folder.is_dir():
    return "the folder does not exist", False
  if not any(folder.iterdir()):
    return "the folder is empty, not a checkpoint (orbax never leaves an empty step folder)", False
  digest = folder / DIGEST_FILE
  if not digest.exists():
    if not (folder / "state").is_dir():
      return "it has no state/ folder (and no digest), so it holds no train state", False
    return None, False
  try:
    recorded = _read_digest(digest)
  except ValueError as err:
    return f"its digest {DIGEST_FILE} is unreadable ({err})", False
  present = _step_files(folder)
  missing = sorted(set(recorded) - set(present))
  gone = sorted({name.split("/")[0] for name in missing
                 if "/" in name and not (folder / name.split("/")[0]).exists()})
  problems = [f"{top}/ is missing (its digest lists "
              f"{sum(name.startswith(top + '/') for name in missing)} files in it)" for top in gone]
  problems += [f"{name} is missing (its digest lists it)" for name in missing
               if name.split("/")[0] not in gone]
  problems += [f"{name} is not in its digest (a file added after the save)"
               for name in present if name not in recorded]
  kept = [name for name in present if name in recorded]
  for name in kept:
    size = (folder / name).stat().st_size
    if size != recorded[name][0]:
      problems.append(f"{name} is {size} bytes, its digest says {recorded[name][0]} (truncated or replaced)")
  if not problems:
    actual = _hash_files(folder, kept)
    problems = [f"{name} differs from its digest (SHA-256 mismatch: the file was altered)"
                for name in kept if actual[name][1] != recorded[name][1]]
  if problems:
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return problems[0] + more, False
  return None, True
