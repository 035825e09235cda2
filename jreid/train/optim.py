"""Optimisers and learning-rate schedules from `config.optim`.

Weight decay is the coupled L2 of PyTorch's Adam/SGD (added to the gradient
before the moment estimates), which is what FastReID's published numbers use;
`adamw` is the decoupled form. Schedules are step-based; the recipes' epoch
values are converted in the configs. Per-group multipliers and the timed
freeze are in `param_groups`.
"""
from __future__ import annotations

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


def _adam(config):
  return optax.chain(param_groups.add_group_decayed_weights(config.weight_decay, config.groups),
                     optax.scale_by_adam(b1=config.beta1, b2=config.beta2, eps=config.eps))


def _adamw(config):
  return optax.chain(optax.scale_by_adam(b1=config.beta1, b2=config.beta2, eps=config.eps),
                     param_groups.add_group_decayed_weights(config.weight_decay, config.groups))


def _sgd(config):
  momentum = (optax.trace(decay=config.momentum, nesterov=config.nesterov) if config.momentum
              else optax.identity())
  return optax.chain(param_groups.add_group_decayed_weights(config.weight_decay, config.groups),
                     momentum)


# Each is the optimiser without its learning rate, which `build` applies last
# so that the frozen group's held state never delays the global schedule.
OPTIMIZERS = {"adam": _adam, "adamw": _adamw, "sgd": _sgd}


def build(config, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  if config.name not in OPTIMIZERS:
    raise ConfigError(f"optim.name={config.name!r}; known: {sorted(OPTIMIZERS)}")
  param_groups.check_groups(config.groups)
  schedule = learning_rate_schedule(config, total_steps)
  tx = OPTIMIZERS[config.name](config)
  if config.freeze_steps > 0:
    if not config.freeze:
      raise ConfigError("optim.freeze_steps > 0 needs optim.freeze, a parameter path pattern")
    tx = param_groups.freeze_for(tx, config.freeze, config.freeze_steps)
  tx = optax.chain(tx, optax.scale_by_learning_rate(schedule))
  if config.groups:
    tx = optax.chain(tx, param_groups.scale_by_group_lr(config.groups))
  if config.clip_grad_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(config.clip_grad_norm), tx)
  return tx, schedule
