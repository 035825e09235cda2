"""Parameter groups by path pattern: per-group lr / weight-decay multipliers and a timed freeze.

A path is the '/'-joined key path of a leaf (`backbone/layer1_0/conv1/kernel`,
`head/neck/bias`); a pattern is a Python regex that must match the whole
path. `optim.groups` is a sequence of `(pattern, lr_multiplier,
wd_multiplier)`; the first matching group wins, unmatched leaves get 1, 1.
That covers FastReID's BIAS_LR_FACTOR / WEIGHT_DECAY_BIAS / HEADS_LR_FACTOR,
e.g. `((r".*/bias", 2.0, 0.0), (r"head/.*", 10.0, 1.0))`.

`optim.freeze` + `optim.freeze_steps` hold the matching parameters fixed for
the first steps (FastReID's FREEZE_LAYERS / FREEZE_ITERS: SBS freezes the
backbone for 1000 iterations so the fresh head does not wreck pretrained
features). As with PyTorch parameters that get no gradient, the frozen group
gets no update, no weight decay and no optimiser-moment update; its
optimiser state (Adam's step count included) starts when it unfreezes, while
the learning-rate schedule keeps the global step. Its BatchNorm statistics
are held too (`hold`). Unlike FastReID, the frozen BNs still normalise with
batch statistics (FastReID switches the frozen modules to eval mode); the
difference is small once the statistics are pretrained, and it keeps one
forward for every step.
"""
from __future__ import annotations

import re
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from jreid.errors import ConfigError


def path_name(path) -> str:
  return "/".join(str(getattr(key, "key", getattr(key, "name", key))) for key in path)


def _compile(pattern: str) -> re.Pattern:
  try:
    return re.compile(pattern)
  except re.error as err:
    raise ConfigError(f"bad parameter path pattern {pattern!r}: {err}") from None


def path_mask(tree, pattern: str):
  """A tree of Python bools: does `pattern` match the leaf's whole path."""
  regex = _compile(pattern) if pattern else None
  return jax.tree_util.tree_map_with_path(
      lambda path, _: bool(regex and regex.fullmatch(path_name(path))), tree)


def check_groups(groups: Sequence) -> None:
  for group in groups:
    if len(group) != 3:
      raise ConfigError(f"optim.groups entries are (pattern, lr_multiplier, wd_multiplier); got {group!r}")
    _compile(group[0])


def group_value(path, groups: Sequence, column: int) -> float:
  """Column 1 (lr) or 2 (weight decay) of the first group matching `path`; 1.0 if none."""
  name = path_name(path)
  for group in groups:
    if re.fullmatch(group[0], name):
      return float(group[column])
  return 1.0


def scale_by_group_lr(groups: Sequence) -> optax.GradientTransformation:
  """Multiplies each update by its group's lr multiplier (after the learning rate)."""
  def update(updates, state, params=None):
    del params
    scaled = jax.tree_util.tree_map_with_path(
        lambda path, u: u * group_value(path, groups, 1), updates)
    return scaled, state
  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def add_group_decayed_weights(weight_decay: float, groups: Sequence) -> optax.GradientTransformation:
  """updates + weight_decay * wd_multiplier(path) * params (optax.add_decayed_weights per group)."""
  def update(updates, state, params):
    decayed = jax.tree_util.tree_map_with_path(
        lambda path, u, p: u + weight_decay * group_value(path, groups, 2) * p, updates, params)
    return decayed, state
  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


class FreezeState(NamedTuple):
  step: jax.Array
  frozen: optax.OptState   # the inner optimiser's state for the frozen group
  free: optax.OptState     # ... and for everything else


def freeze_for(inner: optax.GradientTransformation, pattern: str,
               steps: int) -> optax.GradientTransformation:
  """`inner` with the params matching `pattern` frozen for the first `steps` updates.

  The two groups get separate copies of `inner`, each masked to its own
  leaves, so the frozen group's state (moments, step count) can be held as a
  whole while it is frozen.
  """
  def masks(params):
    frozen = path_mask(params, pattern)
    return frozen, jax.tree.map(lambda m: not m, frozen)

  def init(params):
    frozen, free = masks(params)
    return FreezeState(step=jnp.zeros((), jnp.int32),
                       frozen=optax.masked(inner, frozen).init(params),
                       free=optax.masked(inner, free).init(params))

  def update(updates, state, params):
    frozen, free = masks(updates)
    # Each masked copy transforms its own leaves and passes the others through.
    updates, free_state = optax.masked(inner, free).update(updates, state.free, params)
    new_updates, frozen_state = optax.masked(inner, frozen).update(updates, state.frozen, params)
    is_frozen = state.step < steps
    frozen_state = jax.tree.map(lambda old, new: jnp.where(is_frozen, old, new),
                                state.frozen, frozen_state)
    new_updates = jax.tree.map(lambda u, m: jnp.where(is_frozen & m, jnp.zeros_like(u), u),
                               new_updates, frozen)
    return new_updates, FreezeState(step=state.step + 1, frozen=frozen_state, free=free_state)

  return optax.GradientTransformation(init, update)


def hold(new_tree, old_tree, pattern: str, active):
  """`old_tree`'s leaves where `pattern` matches and `active` (traced bool) holds, else `new_tree`'s."""
  mask = path_mask(new_tree, pattern)
  return jax.tree.map(lambda new, old, m: jnp.where(active & m, old, new) if m else new,
                      new_tree, old_tree, mask)
