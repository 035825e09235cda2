"""Output folders and files: checked before a run starts, and write errors as one line naming the path.

A run must learn that its workdir cannot be written before it writes
anything there, and a write that fails half way (disk full, read-only
remount) must say where, leaving the previous file in place (every file
jreid rewrites is written to a temporary name and renamed).
"""
from __future__ import annotations

import contextlib
import errno
import os
import pathlib

from jreid.errors import OutputPathError, ReIDError

# The errors that make a write fail for the place, not the data (checkpoint saves look for these).
WRITE_FAILURES = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                  errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied"}
_REASONS = {**WRITE_FAILURES, errno.EPERM: "permission denied",
            errno.ENOTDIR: "a parent is a file, not a folder", errno.EISDIR: "it is a folder",
            errno.ENAMETOOLONG: "the name is too long"}


def _nearest_existing(path: pathlib.Path) -> pathlib.Path:
  while not path.exists() and path != path.parent:
    path = path.parent
  return path


def _check_parent_chain(path: pathlib.Path, what: str) -> None:
  """Every existing ancestor of `path` is a writable folder (so `path` can be created)."""
  existing = _nearest_existing(path.parent)
  if not existing.is_dir():
    raise OutputPathError(f"{what} {path}: {existing} is a file, not a folder")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise OutputPathError(f"{what} {path}: cannot create it, {existing} is not writable "
                          f"({_writability(existing)})")


def _writability(folder: pathlib.Path) -> str:
  """Why `folder` is not writable: a read-only file system, or its permissions."""
  try:
    read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
  except OSError:
    read_only = False
  return "the file system is read-only" if read_only else "permission denied"


def check_output_folder(path: str | pathlib.Path, what: str) -> pathlib.Path:
  """`path` is a writable folder or can be made one; nothing is created. Returns it expanded."""
  path = pathlib.Path(path).expanduser()
  if path.exists():
    if not path.is_dir():
      raise OutputPathError(f"{what} {path} is a file; expected a folder (or a path to create)")
    if not os.access(path, os.W_OK | os.X_OK):
      raise OutputPathError(f"{what} {path} is not writable ({_writability(path)})")
    return path
  _check_parent_chain(path, what)
  return path


def check_output_file(path: str | pathlib.Path, what: str) -> pathlib.Path:
  """`path` can be written as a file: not a folder, its folder writable or creatable."""
  path = pathlib.Path(path).expanduser()
  if path.is_dir():
    raise OutputPathError(f"{what} {path} is a folder; expected a file name")
  if path.exists() and not os.access(path, os.W_OK):
    raise OutputPathError(f"{what} {path} exists and is not writable ({_writability(path.parent)})")
  _check_parent_chain(path, what)
  return path


def describe(err: OSError) -> str:
  return _REASONS.get(err.errno, err.strerror or str(err))


@contextlib.contextmanager
def writing(path: str | pathlib.Path, what: str, previous: str = "the previous version is intact"):
  """Turns an OSError raised while writing `path` into one OutputPathError line naming it."""
  try:
    yield
  except ReIDError:  # already one line (an unreadable image is an OSError too)
    raise
  except OSError as err:
    where = err.filename or path
    raise OutputPathError(f"cannot write {what} {where}: {describe(err)}; {previous}") from None
