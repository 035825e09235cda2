"""Orbax checkpoints of the train state plus the input pipeline's iterator state.

Saves are atomic (orbax writes a temporary folder and renames it), so a run
killed at any moment leaves only complete checkpoints. Before restoring, the
stored parameter names and shapes are compared with the model's, so a
checkpoint from another model fails with one clear line instead of a deep
tensorstore error.
"""
from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jreid.core import tree_paths
from jreid.errors import CheckpointMismatchError

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


class Checkpointer:
  """Keep-N periodic checkpoints of {'state': train state, 'data': iterator state}."""

  def __init__(self, directory: str | pathlib.Path, *, keep: int = 3, read_only: bool = False):
    self.directory = pathlib.Path(directory).expanduser().resolve()
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                           read_only=read_only)
    handlers = {"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler()}
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, data_state: dict | None) -> None:
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              data=ocp.args.JsonSave(data_state or {}))
    self.manager.save(step, args=args)

  def _check_compatible(self, step: int, abstract_state) -> None:
    stored_tree = self.manager.item_metadata(step)["state"]
    stored_tree = getattr(stored_tree, "tree", stored_tree)
    for part in ("params", "batch_stats"):
      stored = shapes_by_name(stored_tree.get(part, {}) or {})
      expected = shapes_by_name(getattr(abstract_state, part))
      problem = describe_mismatch(stored, expected)
      if problem:
        raise CheckpointMismatchError(
            f"checkpoint {self.directory / str(step)} was written by a different model: {problem}")

  def restore(self, step: int, abstract_state) -> tuple[Any, dict]:
    """Restores into the shapes, dtypes and shardings of `abstract_state`."""
    self._check_compatible(step, abstract_state)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                              data=ocp.args.JsonRestore())
    try:
      restored = self.manager.restore(step, args=args)
    except (ValueError, KeyError, TypeError) as err:
      raise CheckpointMismatchError(
          f"checkpoint {self.directory / str(step)} does not fit this run: {err}") from None
    return restored["state"], restored["data"] or {}

  def restore_raw(self, step: int) -> Any:
    """The stored state as nested dicts of numpy arrays (for loading weights into another run)."""
    restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return jax.device_get(restored["state"])

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def open_existing(path: str | pathlib.Path) -> tuple[Checkpointer, int]:
  """A read-only checkpointer on another run's checkpoints and its latest step."""
  directory = resolve_directory(path)
  if not directory.is_dir():
    raise CheckpointMismatchError(f"no checkpoint folder at {directory} (expected a jreid workdir "
                                  "or its checkpoints/ folder)")
  checkpointer = Checkpointer(directory, read_only=True)
  step = checkpointer.latest_step()
  if step is None:
    raise CheckpointMismatchError(f"{directory} holds no complete checkpoint")
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
