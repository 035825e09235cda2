"""The method contract: what a method gives the shared loop and the protocols, in one place.

A method is what `config.method` names (`jreid.methods.METHODS`): a module
whose `build(config, num_classes, make_update)` returns a `Method`, built with
`method(...)` so that a misspelt hook is an error naming it, not a hook the
loop silently never calls. `make_update(trainable=".*")` is the loop's shared
optimiser step (`jreid.train.update.Update`: mixed precision, gradient
clipping, parameter groups, freezing and BN holds); a method that trains only
some leaves names them there, and never builds an optimiser itself.

Required, all pure and jittable:
  init(rng, images) -> state
      A fresh train state (a `jreid.core.state.TrainState` or a subclass:
      EMA encoders, queues and memories live in it). Runs under jit: no
      file is read here.
  train_step(state, batch, rng) -> (state, measurements)
      One update; `measurements` is a dict of scalars, `loss` first (each
      loss part, `lr`, `grad_norm`). The state is donated.
  features(state, images) -> (B, D)
      The test embedding of normalised NHWC float images, as evaluation uses
      it (not L2-normalised; evaluation normalises for cosine distance).

Optional, with their defaults:
  spatial_features(state, images) -> (B, locations, C)   default: none
      Location features for DSR matching (`eval.dsr`); a run asking for DSR
      from a method without it is a ConfigError.
  load_weights(state) -> state                            default: identity
      Eager, on a freshly initialised state only (a resumed state already
      holds them): reads weights another run trained (a distillation teacher).
  after_init_from(state) -> state                         default: identity
      Eager, after `config.init_from` replaced params / batch_stats: state
      derived from them at init (an EMA key encoder, a teacher) starts from
      the loaded weights instead of the random ones.
  fresh_params: str                                       default: ""
      A path regex of params never taken from `init_from` (DASA: each
      domain's classifier starts anew even when the shapes would match).
  train_dataset(records, **pipeline arguments)            default: identity-balanced batches
      The grain pipeline of training batches, with
      `jreid.data.pipeline.train_dataset`'s signature (UP-ReID: two views and
      the original of each image).
  on_epoch_start(state, epoch, context) -> (state, records or None)
      Eager, before the first step of every epoch (epoch 0 included). The
      context (`jreid.train.loop.EpochContext`) extracts features of any
      record list with a state, sharded like evaluation. Returning records
      (pseudo-labels, relabelled 0..K-1) makes them the training set from
      this epoch on: the input pipeline is rebuilt for the epoch, and the
      records are saved with every checkpoint, so a run killed mid-epoch
      resumes with the same labels and the same batches. Returning None
      keeps the current records. With this hook every epoch has its own
      pipeline, seeded by (config.seed, epoch).
  load_constants() -> pytree                              default: none
      Large frozen weights (a Stable-Diffusion UNet) read once, eagerly,
      from files the config names. The loop places them on the devices and
      passes them as one more, last, argument to train_step, features and
      spatial_features; they are never checkpointed and have no optimiser
      state, so checkpoints do not grow with them.
  bank(params, batch_stats) -> {"params", "batch_stats"}  default: none
      The lifelong protocol: the variables a domain keeps for itself.
  stem_moments(state, images) -> (B, 2C)                  default: none
  stem_statistics(state) -> (mean, var)
      The lifelong protocol's "stats" routing: per image the channel means
      of x and x^2 entering the stem norm, and that norm's running
      statistics, to match an unseen camera to the nearest domain bank.

`impl` keeps the object the hooks came from, for tests and tools that need
more than the contract (its loss parts, its model).
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable

from jreid.errors import ConfigError

REQUIRED = ("init", "train_step", "features")


@dataclasses.dataclass(frozen=True)
class Method:
  init: Callable
  train_step: Callable
  features: Callable
  spatial_features: Callable | None = None
  load_weights: Callable | None = None
  after_init_from: Callable | None = None
  fresh_params: str = ""
  train_dataset: Callable | None = None
  on_epoch_start: Callable | None = None
  load_constants: Callable | None = None
  bank: Callable | None = None
  stem_moments: Callable | None = None
  stem_statistics: Callable | None = None
  impl: Any = None

  @property
  def has_constants(self) -> bool:
    return self.load_constants is not None


HOOKS = tuple(f.name for f in dataclasses.fields(Method))


def method(name: str, **hooks) -> Method:
  """A checked `Method`: `name` (the config's method) is used in the errors."""
  unknown = sorted(set(hooks) - set(HOOKS))
  if unknown:
    hints = {u: difflib.get_close_matches(u, HOOKS, n=1) for u in unknown}
    said = ", ".join(f"{u!r}" + (f" (did you mean {hints[u][0]!r}?)" if hints[u] else "")
                     for u in unknown)
    raise ConfigError(f"method {name!r} defines unknown hook(s) {said}; the contract "
                      f"(jreid.methods.base) has {list(HOOKS)}")
  missing = [h for h in REQUIRED if not callable(hooks.get(h))]
  if missing:
    raise ConfigError(f"method {name!r} lacks the required hook(s) {missing} "
                      "(jreid.methods.base)")
  for hook, value in hooks.items():
    if hook not in ("fresh_params", "impl") and value is not None and not callable(value):
      raise ConfigError(f"method {name!r}: hook {hook!r} must be callable, got {type(value).__name__}")
  return Method(**hooks)
