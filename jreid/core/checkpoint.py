"""Orbax checkpoints of the train state plus the input pipeline's iterator state.

Saves are atomic (orbax writes a temporary folder and renames it), so a run
killed at any moment leaves only complete checkpoints. Once orbax has
finalised a step, its folder gets `jreid_digest.json`: every file's size and
SHA-256. Every read (resume, `config.resume`, `init_from`, export,
`jreid.load`) checks the step first, so a truncated, deleted, extra or
byte-flipped file is one error naming the step folder and the file, never
silent damage or a tensorstore traceback; orbax's own errors on a step become
one line too. A damaged step is never skipped: the error says whether an
older step is intact and how to use it (move the damaged folder away, or name
the intact step folder where a checkpoint is expected).

A step without a digest was written by a jreid older than digests, or by a
run killed in the instant between orbax's rename and the digest write; it is
read with a printed "not verified" note, since refusing it would strand every
older workdir (and resume after such a kill), while its orbax errors still
come as one line. Before restoring, the stored parameter names and shapes are
compared with the model's, so a checkpoint from another model fails with one
clear line instead of a deep tensorstore error.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import json
import os
import pathlib
import re
import shutil
import sys
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jreid.core import paths, tree_paths
from jreid.core.step_digest import DIGEST_FILE, step_problem, write_digest
from jreid.errors import CheckpointDamagedError, CheckpointMismatchError, OutputPathError

CHECKPOINT_SUBDIR = "checkpoints"


def shapes_by_name(tree) -> dict[str, tuple[int, ...]]:
  return {name: tuple(np.shape(leaf)) for name, leaf in tree_paths.named_leaves(tree)}


def describe_mismatch(stored: dict, expected: dict, limit: int = 3) -> str | None:
  """A short human description of how two name->shape maps differ, or None if they agree."""
  problems = []
  for name in sorted(set(stored) | set(expected)):
    if name not in stored:
      problems.append(f"{name} missing from the checkpoint")
    elif name not in expected:
      problems.append(f"{name} not in the model")
    elif tuple(stored[name]) != tuple(expected[name]):
      problems.append(f"{name} is {tuple(stored[name])} in the checkpoint but "
                      f"{tuple(expected[name])} in the model")
  if not problems:
    return None
  more = f" (and {len(problems) - limit} more)" if len(problems) > limit else ""
  return "; ".join(problems[:limit]) + more


def resolve_directory(path: str | pathlib.Path) -> pathlib.Path:
  """Accepts a run's workdir or its checkpoints/ folder."""
  path = pathlib.Path(path).expanduser().resolve()
  if (path / CHECKPOINT_SUBDIR).is_dir():
    return path / CHECKPOINT_SUBDIR
  return path


# ------------------------------------------------------------------ orbax errors

def _short(err: BaseException, limit: int = 240) -> str:
  """One line of an orbax/tensorstore error: the cause if orbax wrapped one, specs and dumps cut off."""
  while type(err) is Exception and err.__cause__ is not None:  # orbax wraps tensorstore's error
    err = err.__cause__
  text = str(err) or type(err).__name__
  for cut in (" See full TensorStore details", " [tensorstore_spec=", "\n"):
    text = text.split(cut)[0]
  text = " ".join(text.split())
  return text if len(text) <= limit else text[:limit - 3] + "..."


# What orbax raises on a damaged or foreign step (seen in tests/bad_inputs/test_checkpoints.py):
# JSON errors (ValueError), tensorstore's ValueError, FileNotFoundError, KeyError on a
# missing item, AttributeError/TypeError on a metadata file of the wrong shape, and a bare
# `Exception` wrapping a failed tensorstore read (orbax/_src/serialization/serialization.py).
_ORBAX_ERRORS = (ValueError, KeyError, TypeError, AttributeError, OSError)


class _HeldRecords(logging.Filter):
  """Keeps orbax's ERROR log records (each a multi-line traceback of its writer threads) back."""

  def __init__(self):
    super().__init__()
    self.records: list[logging.LogRecord] = []

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno >= logging.ERROR and f"{os.sep}orbax{os.sep}" in record.pathname:
      self.records.append(record)
      return False
    return True

  def release(self) -> None:
    """Logs what was held (a failure that is not a full disk keeps orbax's own report)."""
    for record in self.records:
      logging.getLogger(record.name).handle(record)
    self.records.clear()


@contextlib.contextmanager
def _orbax_write_errors_held():
  """During a save, orbax's error logs wait: a failed write becomes one line, the rest is released."""
  held, logger = _HeldRecords(), logging.getLogger("absl")
  logger.addFilter(held)
  try:
    yield held
  finally:
    logger.removeFilter(held)


def _is_write_failure(err: BaseException) -> bool:
  return _write_failure_reason(err) is not None


def _write_failure_reason(err: BaseException) -> str | None:
  """Why a save failed, if a full disk, a quota or a read-only/unwritable folder made it fail.

  Orbax re-raises tensorstore's failure as a ValueError whose text carries
  `[os_error_code='28']`; a plain OSError keeps its errno.
  """
  while err is not None:
    if isinstance(err, OSError) and err.errno in paths.WRITE_FAILURES:
      return paths.WRITE_FAILURES[err.errno]
    match = re.search(r"os_error_code='(\d+)'", str(err))
    if match and int(match.group(1)) in paths.WRITE_FAILURES:
      return paths.WRITE_FAILURES[int(match.group(1))]
    if "No space left on device" in str(err):
      return paths.WRITE_FAILURES[errno.ENOSPC]
    err = err.__cause__ or err.__context__
  return None


def _is_orbax_error(err: Exception) -> bool:
  return isinstance(err, _ORBAX_ERRORS) or type(err) is Exception


def _drop_abandoned_read_reports() -> None:
  """Mutes what orbax's abandoned reads print after it gave up on a damaged array file.

  When one tensorstore read fails, orbax closes its event loop while the other
  reads of the step still run; each then reports "Event loop is closed" (or
  its dropped coroutine) through `sys.unraisablehook`, hundreds of tracebacks
  after the one-line error. Exactly those are dropped; any other report goes
  to the previous hook.
  """
  previous = sys.unraisablehook
  if getattr(previous, "drops_abandoned_orbax_reads", False):
    return

  def hook(unraisable):
    error, code = unraisable.exc_value, getattr(unraisable.object, "cr_code", None)
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
      return
    if code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename:
      return
    previous(unraisable)

  hook.drops_abandoned_orbax_reads = True
  sys.unraisablehook = hook


def _note(text: str) -> None:
  if jax.process_index() == 0:
    print(text, flush=True)


# ------------------------------------------------------------------ checkpointer

class Checkpointer:
  """Keep-N periodic checkpoints of {'state': train state, 'data': iterator state}, with digests."""

  def __init__(self, directory: str | pathlib.Path, *, keep: int = 3, read_only: bool = False):
    self.directory = pathlib.Path(directory).expanduser().resolve()
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                           read_only=read_only)
    handlers = {"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler()}
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

  def step_folder(self, step: int) -> pathlib.Path:
    return self.directory / str(step)

  def all_steps(self) -> list[int]:
    """Every step folder orbax sees (digit names; its unfinished `*.orbax-checkpoint-tmp-*` are not)."""
    return sorted(self.manager.all_steps())

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, data_state: dict | None) -> None:
    """Writes step `step`, waits for orbax to finalise it, then writes its digest.

    `state` may hold jax arrays or host numpy arrays (a snapshot); either
    restores into `abstract_state`'s shardings with the same values.
    Synchronous: the digest needs the finished files, and a save that returns
    has its step on disk.
    """
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              data=ocp.args.JsonSave(data_state or {}))
    _drop_abandoned_read_reports()  # a failed write leaves the step's other writes on a closed loop
    try:
      with _orbax_write_errors_held() as held:
        saved = self.manager.save(step, args=args)
        self.manager.wait_until_finished()
      if saved and jax.process_index() == 0:
        write_digest(self.step_folder(step))
    except Exception as err:  # orbax wraps the OSError of a failed write in its own types
      if not _is_write_failure(err):
        held.release()
        raise
      self._remove_unfinished(step)
      raise OutputPathError(f"cannot write checkpoint {self.step_folder(step)}: "
                            f"{_write_failure_reason(err)}; the earlier checkpoints "
                            f"{self.all_steps()} are intact") from None

  def _remove_unfinished(self, step: int) -> None:
    """Frees what a failed save left (orbax's temporary folder of `step`, a step without digest)."""
    for leftover in self.directory.glob(f"{step}.orbax-checkpoint-tmp*"):
      shutil.rmtree(leftover, ignore_errors=True)

  def check(self, step: int) -> bool:
    """Raises CheckpointDamagedError unless step `step` is whole; True if its digest verified it.

    The error names the folder and what is wrong, and says whether an older
    step is intact and how to use it; a step without a digest passes with a note.
    """
    problem, verified = step_problem(self.step_folder(step))
    if problem:
      raise self._unusable(step, problem)
    if not verified:
      _note(f"note: checkpoint {self.step_folder(step)} has no {DIGEST_FILE} (written by a jreid "
            "before digests, or the run stopped just after writing it): its files are not verified")
    return verified

  def _unusable(self, step: int, problem: str) -> CheckpointDamagedError:
    return CheckpointDamagedError(f"checkpoint {self.step_folder(step)} cannot be used: {problem}; "
                                  f"{self._older(step)}")

  def _older(self, step: int) -> str:
    """Whether an older step is intact (its digest checked) and how to use it: never chosen silently."""
    older = [s for s in self.all_steps() if s < step]
    for candidate in reversed(older):
      problem, verified = step_problem(self.step_folder(candidate))
      if problem is None:
        how = "verified by its digest" if verified else f"no {DIGEST_FILE}, so not verified"
        return (f"step {candidate} is intact ({how}): move {self.step_folder(step)} out of "
                f"{self.directory} to use it, or pass {self.step_folder(candidate)} itself as "
                "config.resume (in a new workdir) / config.init_from / --checkpoint")
    return f"no older step is intact (checked {older})" if older else "there is no older step"

  def _unreadable(self, step: int, err: Exception, verified: bool) -> CheckpointDamagedError:
    """An orbax failure on a step whose files were (not) verified, as one line."""
    if type(err) is Exception:
      _drop_abandoned_read_reports()
    if verified:  # the files are as written: orbax cannot read what it wrote
      return CheckpointDamagedError(f"checkpoint {self.step_folder(step)} matches its digest but orbax "
                                    f"cannot read it: {_short(err)}")
    return self._unusable(step, f"orbax cannot read it for this run ({_short(err)}): damaged, or "
                                "written by a run of another config")

  def _check_compatible(self, step: int, abstract_state, verified: bool = True) -> None:
    try:
      stored_tree = self.manager.item_metadata(step)["state"]
      if stored_tree is None:  # orbax's answer when state/_METADATA is gone
        raise FileNotFoundError("it finds no metadata of state/ (state/_METADATA is missing)")
      stored_tree = getattr(stored_tree, "tree", stored_tree)
      stored = {part: shapes_by_name(stored_tree.get(part, {}) or {})
                for part in ("params", "batch_stats")}
    except Exception as err:  # narrowed by _is_orbax_error: anything else is a bug, re-raised
      if not _is_orbax_error(err):
        raise
      raise self._unreadable(step, err, verified) from None
    for part in ("params", "batch_stats"):
      problem = describe_mismatch(stored[part], shapes_by_name(getattr(abstract_state, part)))
      if problem:
        raise CheckpointMismatchError(
            f"checkpoint {self.step_folder(step)} was written by a different model: {problem}")

  def restore(self, step: int, abstract_state) -> tuple[Any, dict]:
    """Restores into the shapes, dtypes and shardings of `abstract_state` (after `check`)."""
    verified = self.check(step)
    self._check_compatible(step, abstract_state, verified)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                              data=ocp.args.JsonRestore())
    try:
      restored = self.manager.restore(step, args=args)
    except Exception as err:  # narrowed by _is_orbax_error: anything else is a bug, re-raised
      if not _is_orbax_error(err):
        raise
      if verified and isinstance(err, (ValueError, KeyError, TypeError)):
        raise CheckpointMismatchError(
            f"checkpoint {self.step_folder(step)} does not fit this run: {_short(err)}") from None
      raise self._unreadable(step, err, verified) from None
    data_state = restored["data"] or {}
    if not isinstance(data_state, dict):
      raise self._unusable(step, f"data/ holds a JSON {type(data_state).__name__}, not the iterator "
                                 "state object jreid writes")
    return restored["state"], data_state

  def restore_raw(self, step: int) -> Any:
    """The stored state as nested dicts of numpy arrays (for loading weights into another run)."""
    verified = self.check(step)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    except Exception as err:  # narrowed by _is_orbax_error: anything else is a bug, re-raised
      if not _is_orbax_error(err):
        raise
      raise self._unreadable(step, err, verified) from None
    return jax.device_get(restored["state"])

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def set_iterator_state(iterator, iterator_state, where: str | pathlib.Path) -> None:
  """`iterator.set_state(iterator_state)`, a stored position that does not fit as one line naming `where`.

  Grain raises IndexError (a position out of range), KeyError (a missing key)
  or TypeError (a value of the wrong type) on a hand-edited or foreign state.
  """
  try:
    iterator.set_state(iterator_state)
  except (IndexError, KeyError, TypeError, ValueError) as err:
    raise CheckpointDamagedError(
        f"checkpoint {where}: its input pipeline state {json.dumps(iterator_state)[:120]} does not fit "
        f"this run's pipeline ({type(err).__name__}: {_short(err)})") from None


def _unfinished(directory: pathlib.Path) -> str:
  names = sorted(p.name for p in directory.iterdir() if "orbax-checkpoint-tmp" in p.name)
  return f" (only unfinished saves: {names[:3]})" if names else ""


def open_existing(path: str | pathlib.Path, step: int | None = None) -> tuple[Checkpointer, int]:
  """A read-only checkpointer on another run's checkpoints and the step to read.

  `path` is a workdir, its checkpoints/ folder (the latest step, or `step`),
  or one step folder (`<workdir>/checkpoints/<step>`): how an older step is
  used when the latest is damaged.
  """
  path = pathlib.Path(path).expanduser().resolve()
  named = None
  if path.name.isdigit() and not (path / CHECKPOINT_SUBDIR).is_dir() and (
      not path.is_dir() or not any(child.name.isdigit() for child in path.iterdir())):
    named = int(path.name)  # a step folder (it holds no step folders itself)
    if step is not None and step != named:
      raise CheckpointMismatchError(f"{path} is step {named}, but step {step} was asked for")
  directory = path.parent if named is not None else resolve_directory(path)
  if not directory.is_dir():
    raise CheckpointMismatchError(f"no checkpoint folder at {directory} (expected a jreid workdir, "
                                  "its checkpoints/ folder or one of its step folders)")
  checkpointer = Checkpointer(directory, read_only=True)
  steps = checkpointer.all_steps()
  if named is None and step is None:
    step = checkpointer.latest_step()
    if step is None:
      raise CheckpointMismatchError(f"{directory} holds no complete checkpoint{_unfinished(directory)}")
  step = named if named is not None else step
  if step not in steps:
    raise CheckpointMismatchError(f"{directory} has no step {step}; it has {steps}")
  return checkpointer, step


def merge_matching(target, source, *, prefix: str, report=None) -> tuple[Any, list[str], list[str]]:
  """Copies every leaf of `source` whose name and shape match `target`.

  Returns the merged tree, the names loaded and the names of `target` left as
  initialised (missing or a different shape, e.g. a classifier for another
  number of identities). A `jreid.convert.load.LoadReport` passed as `report`
  also gets the skipped names and why (shape mismatch, not in the model), so
  `init_from` from a jreid run is reported as from a PyTorch file.
  """
  source_leaves = dict(tree_paths.named_leaves(source))
  loaded, kept = [], []
  names = set()

  def pick(path, leaf):
    name = tree_paths.path_name(path)
    names.add(name)
    stored = source_leaves.get(name)
    if stored is not None and np.shape(stored) == tuple(leaf.shape):
      loaded.append(f"{prefix}/{name}")
      return np.asarray(stored, dtype=leaf.dtype)
    kept.append(f"{prefix}/{name}")
    if report is not None and stored is None:
      report.missing.append(f"{prefix}/{name}")
    elif report is not None:
      report.mismatched.append((f"{prefix}/{name}", tuple(np.shape(stored)), tuple(leaf.shape)))
    return leaf

  merged = jax.tree_util.tree_map_with_path(pick, target)
  if report is not None:
    report.loaded += loaded
    report.unused += [f"{prefix}/{name}" for name in source_leaves if name not in names]
  return merged, loaded, kept


def restore_variables(path: str | pathlib.Path) -> tuple[dict, pathlib.Path]:
  """Another run's latest `{"params", "batch_stats"}` (numpy) and where they were read from."""
  other, step = open_existing(path)
  try:
    raw = other.restore_raw(step)
  finally:
    other.close()
  return ({"params": raw.get("params") or {}, "batch_stats": raw.get("batch_stats") or {}},
          other.directory / str(step))
