"""Supervised ReID (FastReID's bag-of-tricks): label-smoothed CE on the BNNeck
logits plus batch-hard triplet on the pre-BN feature."""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jreid.losses.softmax import cross_entropy
from jreid.losses.triplet import batch_hard_triplet
from jreid.models.reid import build_model
from jreid.train.state import TrainState


@dataclasses.dataclass(frozen=True)
class Supervised:
  model: nn.Module
  tx: optax.GradientTransformation
  schedule: Any
  loss_config: Any

  def init(self, rng: jax.Array, images: jax.Array) -> TrainState:
    variables = self.model.init(rng, images, train=False)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=self.tx.init(params))

  def losses(self, params, batch_stats, batch, rng):
    (_, out), updates = self.model.apply(
        {"params": params, "batch_stats": batch_stats}, batch["image"], train=True,
        mutable=["batch_stats"], rngs={"dropout": rng})
    config = self.loss_config
    parts = {
        "loss_ce": cross_entropy(out["logits"], batch["label"], config.label_smoothing),
        "loss_triplet": batch_hard_triplet(out["pre_neck"], batch["label"], margin=config.triplet_margin,
                                           soft_margin=config.triplet_soft_margin),
    }
    total = config.ce_weight * parts["loss_ce"] + config.triplet_weight * parts["loss_triplet"]
    return total, (updates["batch_stats"], parts)

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array):
    grad_fn = jax.value_and_grad(self.losses, has_aux=True)
    (total, (batch_stats, parts)), grads = grad_fn(state.params, state.batch_stats, batch, rng)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    measurements = {"loss": total, **parts, "lr": self.schedule(state.step),
                    "grad_norm": optax.global_norm(grads)}
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state)
    return new_state, measurements

  def features(self, state: TrainState, images: jax.Array) -> jax.Array:
    feature, _ = self.model.apply({"params": state.params, "batch_stats": state.batch_stats},
                                  images, train=False)
    return feature

  def spatial_features(self, state: TrainState, images: jax.Array) -> jax.Array:
    """The last backbone map as (B, H*W, C) location features, for DSR matching."""
    _, out = self.model.apply({"params": state.params, "batch_stats": state.batch_stats},
                              images, train=False)
    feature_map = out["layer4"]
    return feature_map.reshape(feature_map.shape[0], -1, feature_map.shape[-1])


def build(config, num_classes: int, tx, schedule) -> Supervised:
  return Supervised(model=build_model(config.model, num_classes), tx=tx, schedule=schedule,
                    loss_config=config.loss)
