"""The update step every method shares: gradients of the trainable leaves, the optimiser, holds.

A method computes its losses; `Update` does the rest the same way for all of
them, so a setting means the same thing whichever method runs:

  * mixed precision: `to_compute` casts params and images to
    `train.compute_dtype` for the forward (`jreid.core.precision`); master
    weights, optimiser state and BN statistics stay float32;
  * gradient clipping, per-group lr / weight decay and the timed freeze are
    in `tx` (`jreid.train.optim`, one `ParamTable`);
  * a method's trainable set (`table.trainable`, DASA's norms and SA kernels):
    only those leaves are differentiated (frozen convs cost no weight gradient)
    and updated; the others are carried over bit for bit;
  * the BN hold of `optim.freeze`: the frozen group's statistics are held too.

The loop builds one per run (`make_update` in `jreid.methods.base`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jreid.core import partition, precision
from jreid.train import optim
from jreid.train.param_groups import ALL, ParamTable, hold


@dataclasses.dataclass(frozen=True)
class Update:
  tx: optax.GradientTransformation
  schedule: Callable
  table: ParamTable
  compute_dtype: Any = jnp.float32

  def init(self, params):
    return self.tx.init(params)

  def to_compute(self, tree):
    """Params or images in the compute dtype; a no-op for float32."""
    return precision.cast_floating(tree, self.compute_dtype)

  def value_and_grad(self, loss_fn: Callable, params, *args):
    """`jax.value_and_grad(loss_fn, has_aux=True)` over the trainable leaves of `params` only.

    `loss_fn(params, *args)` sees the whole tree; the gradient tree holds the
    trainable leaves (all of them for a method that trains everything).
    """
    if self.table.trains_everything:
      return jax.value_and_grad(loss_fn, has_aux=True)(params, *args)
    trainable, frozen = self.table.split(params)
    return jax.value_and_grad(lambda t, *a: loss_fn(partition.merge(frozen, t), *a),
                              has_aux=True)(trainable, *args)

  def apply(self, state, grads, batch_stats, measurements: dict):
    """The optimiser step on `state` (a TrainState or subclass), with `lr` and `grad_norm` measured."""
    if self.table.trains_everything:
      updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
    else:
      trainable, frozen = self.table.split(state.params)
      full_grads = partition.merge(jax.tree.map(jnp.zeros_like, frozen), grads)
      updates, opt_state = self.tx.update(full_grads, state.opt_state, state.params)
      # Frozen leaves are carried over, not updated by zero: bit-identical by construction.
      params = partition.merge(frozen, optax.apply_updates(
          trainable, partition.select(updates, self.table.trainable)))
    if self.table.freeze_steps:
      batch_stats = hold(batch_stats, state.batch_stats, self.table.freeze,
                         state.step < self.table.freeze_steps)
    measurements = {**measurements, "lr": self.schedule(state.step),
                    "grad_norm": optax.tree.norm(grads)}
    return state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                         opt_state=opt_state), measurements


def factory(config, total_steps: int) -> Callable[..., Update]:
  """`make_update(trainable=".*")` for `config` (durations in steps): what `methods.build` takes."""
  def make_update(trainable: str = ALL) -> Update:
    tx, schedule, table = optim.build_with_table(config.optim, total_steps, trainable=trainable)
    return Update(tx=tx, schedule=schedule, table=table,
                  compute_dtype=precision.compute_dtype(config.train.compute_dtype))
  return make_update
