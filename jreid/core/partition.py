"""Pytrees split and merged by path pattern: freezing and DASA's per-domain banks are dict operations.

A path is the '/'-joined key path of a leaf (`backbone/layer1_0/bn1/scale`),
a pattern a Python regex that must match the whole path (`jreid.core.tree_paths`,
the naming every module shares). `select` keeps the matching leaves, `exclude`
the others, `merge` lays trees over each other; `merge(exclude(t, p),
select(t, p)) == t` for every tree and pattern, so a bank can be cut out of
a model's variables, stored, and laid back over the shared part unchanged.
"""
from __future__ import annotations

import jax
import numpy as np
from flax import traverse_util

from jreid.core.tree_paths import SEP, matcher


def _flat(tree) -> dict:
  return traverse_util.flatten_dict(tree, sep=SEP) if tree else {}


def _nest(flat: dict) -> dict:
  return traverse_util.unflatten_dict(flat, sep=SEP) if flat else {}


def select(tree, pattern: str) -> dict:
  """The leaves whose path matches `pattern` (an empty pattern matches nothing)."""
  matches = matcher(pattern)
  return _nest({k: v for k, v in _flat(tree).items() if matches(k)})


def exclude(tree, pattern: str) -> dict:
  """The leaves whose path does not match `pattern`."""
  matches = matcher(pattern)
  return _nest({k: v for k, v in _flat(tree).items() if not matches(k)})


def merge(*trees) -> dict:
  """One tree with every leaf of every tree; a later tree's leaf replaces an earlier one's."""
  out = {}
  for tree in trees:
    out.update(_flat(tree))
  return _nest(out)


def paths(tree) -> list[str]:
  return sorted(_flat(tree))


def nbytes(tree) -> int:
  """Bytes of the arrays' data (what a float32 checkpoint of the tree stores)."""
  return int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree)))
