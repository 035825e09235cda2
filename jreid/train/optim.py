"""Optimisers and learning-rate schedules from `config.optim`.

Weight decay is the coupled L2 of PyTorch's Adam/SGD (added to the gradient
before the moment estimates), which is what FastReID's published numbers use;
`adamw` is the decoupled form; `weight_decay_end` >= 0 makes it a cosine
schedule from `weight_decay` to that value over the run (DINO's 0.04 -> 0.4).
Schedules are functions of the step; durations given in epochs were resolved
to steps from the data before (`jreid.train.durations`). Which leaves train,
their lr / weight-decay multipliers and the timed freeze come from one
`param_groups.ParamTable`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jreid.errors import ConfigError
from jreid.train import param_groups


def warmup_factor(step, warmup_steps: int, start_factor: float):
  """FastReID's linear warmup: factor goes from `start_factor` to 1 over `warmup_steps`."""
  if warmup_steps <= 0:
    return 1.0
  alpha = jnp.minimum(step / warmup_steps, 1.0)
  return start_factor * (1.0 - alpha) + alpha


def _multistep(config):
  milestones = jnp.asarray(sorted(config.milestones) or [2**31 - 1])
  return lambda step: config.gamma ** jnp.sum(step >= milestones)


def _cosine(config, total_steps: int):
  """Constant until `cosine_delay_steps`, then cosine to `min_lr` (FastReID's delayed cosine)."""
  def factor(step):
    span = max(total_steps - config.cosine_delay_steps, 1)
    progress = jnp.clip((step - config.cosine_delay_steps) / span, 0.0, 1.0)
    floor = config.min_lr / config.lr
    return floor + (1.0 - floor) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
  return factor


SCHEDULES = {
    "constant": lambda config, total: (lambda step: 1.0),
    "multistep": lambda config, total: _multistep(config),
    "cosine": _cosine,
}


def learning_rate_schedule(config, total_steps: int) -> optax.Schedule:
  if config.schedule not in SCHEDULES:
    raise ConfigError(f"optim.schedule={config.schedule!r}; known: {sorted(SCHEDULES)}")
  decay = SCHEDULES[config.schedule](config, total_steps)

  def schedule(step):
    return config.lr * decay(step) * warmup_factor(step, config.warmup_steps, config.warmup_factor)
  return schedule


def cosine_ramp(start: float, end: float, total_steps: int) -> optax.Schedule:
  """`start` at step 0 to `end` at `total_steps`, half a cosine (DINO's weight decay, momentum)."""
  def value(step):
    progress = jnp.clip(step / max(total_steps, 1), 0.0, 1.0)
    return end + (start - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
  return value


def _weight_decay(config, total_steps: int):
  if config.weight_decay_end < 0:
    return config.weight_decay
  return cosine_ramp(config.weight_decay, config.weight_decay_end, total_steps)


def _decay(config, table, total_steps):
  return param_groups.add_group_decayed_weights(_weight_decay(config, total_steps), table)


def _adam(config, table, total_steps):
  return optax.chain(_decay(config, table, total_steps),
                     optax.scale_by_adam(b1=config.beta1, b2=config.beta2, eps=config.eps))


def _adamw(config, table, total_steps):
  return optax.chain(optax.scale_by_adam(b1=config.beta1, b2=config.beta2, eps=config.eps),
                     _decay(config, table, total_steps))


def _sgd(config, table, total_steps):
  momentum = (optax.trace(decay=config.momentum, nesterov=config.nesterov) if config.momentum
              else optax.identity())
  return optax.chain(_decay(config, table, total_steps), momentum)


# Each is the optimiser without its learning rate, which `build` applies last
# so that the frozen group's held state never delays the global schedule.
OPTIMIZERS = {"adam": _adam, "adamw": _adamw, "sgd": _sgd}


CLIP_EPS = 1e-6  # DINO's utils.clip_gradients


def clip_per_parameter(max_norm: float) -> optax.GradientTransformation:
  """DINO's `clip_gradients`: each leaf's gradient scaled by min(1, max_norm / (||g|| + 1e-6)) on its own.

  Unlike `optax.clip_by_global_norm`, one large gradient (the 65536-unit last
  layer's) does not shrink every other parameter's. Chain it before the
  optimiser, as DINO clips before `optimizer.step()`.
  """
  def update(updates, state, params=None):
    del params

    def clip(g):
      norm = jnp.sqrt(jnp.sum(jnp.square(g.astype(jnp.float32))))
      return (g * jnp.minimum(1.0, max_norm / (norm + CLIP_EPS))).astype(g.dtype)
    return jax.tree.map(clip, updates), state
  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def build(config, total_steps: int, *, trainable: str = param_groups.ALL
          ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimiser of `config` (resolved to steps) over the leaves `trainable` matches."""
  tx, schedule, _ = build_with_table(config, total_steps, trainable=trainable)
  return tx, schedule


def build_with_table(config, total_steps: int, *, trainable: str = param_groups.ALL):
  """`build`, also returning the `ParamTable` the optimiser was built from."""
  if config.name not in OPTIMIZERS:
    raise ConfigError(f"optim.name={config.name!r}; known: {sorted(OPTIMIZERS)}")
  table = param_groups.ParamTable.from_config(config, trainable)
  schedule = learning_rate_schedule(config, total_steps)
  tx = OPTIMIZERS[config.name](config, table, total_steps)
  if table.freeze_steps > 0:
    tx = param_groups.freeze_for(tx, table.freeze, table.freeze_steps)
  tx = optax.chain(tx, optax.scale_by_learning_rate(schedule))
  if table.groups:
    tx = optax.chain(tx, param_groups.scale_by_group_lr(table))
  if config.clip_grad_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(config.clip_grad_norm), tx)
  if config.get("clip_per_parameter", 0.0) > 0:
    tx = optax.chain(clip_per_parameter(config.clip_per_parameter), tx)
  if not table.trains_everything:
    tx = param_groups.trainable_only(tx, table.trainable)
  return tx, schedule, table
