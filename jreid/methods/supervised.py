"""Supervised ReID (FastReID's recipes): the `config.loss` objective over the model's branches.

BoT is label-smoothed CE on the BNNeck logits plus batch-hard triplet on the
pre-BN feature; SBS swaps in CircleSoftmax and the soft-margin triplet; MGN
and PCB average the same parts over their branches (`jreid.losses.objective`).
Mixed precision (`train.compute_dtype`) and the backbone freeze
(`optim.freeze`) are applied here, around the model, as pytree operations.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jreid.losses import objective
from jreid.models.reid import build_model
from jreid.train import param_groups, precision
from jreid.train.state import TrainState


@dataclasses.dataclass(frozen=True)
class Supervised:
  model: nn.Module
  tx: optax.GradientTransformation
  schedule: Any
  loss_config: Any
  compute_dtype: Any = jnp.float32
  freeze: str = ""          # params and BN statistics held fixed for the first `freeze_steps`
  freeze_steps: int = 0

  def init(self, rng: jax.Array, images: jax.Array) -> TrainState:
    variables = self.model.init(rng, images, train=False)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=self.tx.init(params))

  def to_compute(self, tree):
    """Params or images in the compute dtype (`train.compute_dtype`); a no-op for float32."""
    return precision.cast_floating(tree, self.compute_dtype)

  def apply_train(self, params, batch_stats, images, rng):
    """The training forward in the compute dtype: (outputs in float32, float32 batch-stat updates)."""
    (_, out), updates = self.model.apply(
        {"params": self.to_compute(params), "batch_stats": batch_stats}, self.to_compute(images),
        train=True, mutable=["batch_stats"], rngs={"dropout": rng})
    return (precision.cast_floating(out, jnp.float32),
            precision.cast_floating(updates["batch_stats"], jnp.float32))

  def losses(self, params, batch_stats, batch, rng):
    out, new_batch_stats = self.apply_train(params, batch_stats, batch["image"], rng)
    total, parts = objective.reid_losses(out, batch["label"], self.loss_config)
    return total, (new_batch_stats, parts)

  def apply_gradients(self, state: TrainState, grads, batch_stats, measurements: dict):
    """The optimiser step shared by methods built on this one (distillation)."""
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if self.freeze_steps:
      batch_stats = param_groups.hold(batch_stats, state.batch_stats, self.freeze,
                                      state.step < self.freeze_steps)
    measurements = {**measurements, "lr": self.schedule(state.step),
                    "grad_norm": optax.tree.norm(grads)}
    return state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                         opt_state=opt_state), measurements

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array):
    grad_fn = jax.value_and_grad(self.losses, has_aux=True)
    (total, (batch_stats, parts)), grads = grad_fn(state.params, state.batch_stats, batch, rng)
    return self.apply_gradients(state, grads, batch_stats, {"loss": total, **parts})

  def apply_eval(self, state: TrainState, images: jax.Array):
    feature, out = self.model.apply(
        {"params": self.to_compute(state.params), "batch_stats": state.batch_stats},
        self.to_compute(images), train=False)
    return feature.astype(jnp.float32), out

  def features(self, state: TrainState, images: jax.Array) -> jax.Array:
    return self.apply_eval(state, images)[0]

  def spatial_features(self, state: TrainState, images: jax.Array) -> jax.Array:
    """The last backbone map as (B, H*W, C) location features, for DSR matching."""
    feature_map = self.apply_eval(state, images)[1]["layer4"].astype(jnp.float32)
    return feature_map.reshape(feature_map.shape[0], -1, feature_map.shape[-1])


def build(config, num_classes: int, tx, schedule) -> Supervised:
  model = build_model(config.model, num_classes,
                      cosine_classifier=objective.cosine_classifier(config.loss))
  return Supervised(model=model, tx=tx, schedule=schedule, loss_config=config.loss,
                    compute_dtype=precision.compute_dtype(config.train.compute_dtype),
                    freeze=config.optim.freeze, freeze_steps=config.optim.freeze_steps)
