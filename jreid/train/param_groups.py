"""The parameter table: which leaves train, how fast, with how much weight decay, and when.

Every optimiser of every method reads one `ParamTable` (`optim.build`, the
shared update step `jreid.train.update`); leaves are named and matched as in
`jreid.core.tree_paths` (a regex over the whole '/'-joined path). Its rows:

  groups     `optim.groups`: `(pattern, lr_multiplier, wd_multiplier)`, the first
             matching group wins, unmatched leaves get 1, 1. FastReID's
             BIAS_LR_FACTOR / WEIGHT_DECAY_BIAS / HEADS_LR_FACTOR are e.g.
             `((r".*/bias", 2.0, 0.0), (r"head/.*", 10.0, 1.0))`.
  freeze     `optim.freeze` + `optim.freeze_steps`: held fixed for the first steps
             (FastReID's FREEZE_LAYERS / FREEZE_ITERS: SBS freezes the backbone for
             1000 iterations so the fresh head does not wreck pretrained features).
  trainable  the method's trainable set (DASA: norms, SA kernels, the classifier)
             less `optim.frozen` (DCAC: CLIP's patch conv); every other leaf is
             frozen for the whole run, bit for bit, gets no gradient and keeps no
             optimiser state.

As with PyTorch parameters that get no gradient, a timed-frozen group gets no
update, no weight decay and no optimiser-moment update; its optimiser state
(Adam's step count included) starts when it unfreezes, while the
learning-rate schedule keeps the global step. Its BatchNorm statistics are
held too (`hold`). Unlike FastReID, the frozen BNs still normalise with batch
statistics (FastReID switches the frozen modules to eval mode); the
difference is small once the statistics are pretrained, and it keeps one
forward for every step.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jreid.core import partition, tree_paths
from jreid.errors import ConfigError

ALL = ".*"


@dataclasses.dataclass(frozen=True)
class ParamTable:
  groups: tuple = ()
  freeze: str = ""
  freeze_steps: int = 0
  trainable: str = ALL

  def __post_init__(self):
    for group in self.groups:
      if len(group) != 3:
        raise ConfigError(f"optim.groups entries are (pattern, lr_multiplier, wd_multiplier); "
                          f"got {group!r}")
      tree_paths.compile_pattern(group[0])
    if self.freeze_steps > 0 and not self.freeze:
      raise ConfigError("optim.freeze_steps > 0 needs optim.freeze, a parameter path pattern")
    tree_paths.compile_pattern(self.freeze)
    tree_paths.compile_pattern(self.trainable)

  @classmethod
  def from_config(cls, optim_config, trainable: str = ALL) -> "ParamTable":
    return cls(groups=tuple(tuple(g) for g in optim_config.groups), freeze=optim_config.freeze,
               freeze_steps=int(optim_config.freeze_steps),
               trainable=excluding(trainable, optim_config.get("frozen", "")))

  @property
  def trains_everything(self) -> bool:
    return self.trainable == ALL

  def group_value(self, name: str, column: int) -> float:
    """Column 1 (lr) or 2 (weight decay) of the first group matching `name`; 1.0 if none."""
    for group in self.groups:
      if tree_paths.matcher(group[0])(name):
        return float(group[column])
    return 1.0

  def split(self, params) -> tuple[dict, dict]:
    """(trainable leaves, frozen leaves) of `params`."""
    return partition.select(params, self.trainable), partition.exclude(params, self.trainable)


def excluding(pattern: str, frozen: str) -> str:
  """A pattern matching what `pattern` matches and `frozen` does not (both whole-name patterns)."""
  if not frozen:
    return pattern
  tree_paths.compile_pattern(frozen)
  return f"(?!(?:{frozen})$)(?:{pattern})"


def _per_leaf(fn, *trees):
  return jax.tree_util.tree_map_with_path(lambda path, *x: fn(tree_paths.path_name(path), *x), *trees)


def scale_by_group_lr(table: ParamTable) -> optax.GradientTransformation:
  """Multiplies each update by its group's lr multiplier (after the learning rate)."""
  def update(updates, state, params=None):
    del params
    return _per_leaf(lambda name, u: u * table.group_value(name, 1), updates), state
  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def add_group_decayed_weights(weight_decay: float | Callable,
                              table: ParamTable) -> optax.GradientTransformation:
  """updates + weight_decay * wd_multiplier(path) * params (optax.add_decayed_weights per group).

  A callable `weight_decay` is a schedule of the step (DINO's 0.04 -> 0.4); it
  counts steps in its own state, a constant keeps none.
  """
  def decayed(updates, params, decay):
    return _per_leaf(lambda name, u, p: u + decay * table.group_value(name, 2) * p, updates, params)

  if not callable(weight_decay):
    return optax.GradientTransformation(
        lambda params: optax.EmptyState(),
        lambda updates, state, params: (decayed(updates, params, weight_decay), state))

  def update(updates, state, params):
    return (decayed(updates, params, weight_decay(state.count)),
            optax.ScaleByScheduleState(count=optax.safe_int32_increment(state.count)))
  return optax.GradientTransformation(
      lambda params: optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32)), update)


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
    frozen = tree_paths.mask(params, pattern)
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


def trainable_only(tx: optax.GradientTransformation, pattern: str) -> optax.GradientTransformation:
  """`tx` on the leaves matching `pattern`; the rest get zero updates and keep no optimiser state."""
  labels = lambda params: partition.merge(
      jax.tree.map(lambda _: "frozen", partition.exclude(params, pattern)),
      jax.tree.map(lambda _: "trainable", partition.select(params, pattern)))
  return optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()}, labels)


def hold(new_tree, old_tree, pattern: str, active):
  """`old_tree`'s leaves where `pattern` matches and `active` (traced bool) holds, else `new_tree`'s."""
  mask = tree_paths.mask(new_tree, pattern)
  return jax.tree.map(lambda new, old, m: jnp.where(active & m, old, new) if m else new,
                      new_tree, old_tree, mask)
