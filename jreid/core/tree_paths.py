"""Names of pytree leaves, and path patterns over them: the one naming every module uses.

A leaf's name is its '/'-joined key path (`backbone/layer1_0/bn1/scale`,
`opt_state/0/mu/...`): dict keys, dataclass field names and sequence indices
as they are. A pattern is a Python regex that must match the whole name; the
empty pattern matches nothing. Parameter groups, freezing, DASA's banks,
checkpoint comparisons and weight loading all name leaves this way, so a
pattern that selects a leaf in one place selects it everywhere.
"""
from __future__ import annotations

import re
from typing import Callable

import jax

from jreid.errors import ConfigError

SEP = "/"


def key_name(key) -> str:
  for attribute in ("key", "name", "idx"):
    if hasattr(key, attribute):
      return str(getattr(key, attribute))
  return str(key)


def path_name(path) -> str:
  return SEP.join(key_name(key) for key in path)


def named_leaves(tree) -> list[tuple[str, object]]:
  return [(path_name(path), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def compile_pattern(pattern: str) -> re.Pattern:
  try:
    return re.compile(pattern)
  except re.error as err:
    raise ConfigError(f"bad parameter path pattern {pattern!r}: {err}") from None


def matcher(pattern: str) -> Callable[[str], bool]:
  """name -> does `pattern` match all of it (never, for the empty pattern)."""
  regex = compile_pattern(pattern) if pattern else None
  return lambda name: bool(regex and regex.fullmatch(name))


def mask(tree, pattern: str):
  """A tree of Python bools: does `pattern` match the leaf's name."""
  matches = matcher(pattern)
  return jax.tree_util.tree_map_with_path(lambda path, _: matches(path_name(path)), tree)
