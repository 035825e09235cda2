"""Supervised ReID (FastReID's recipes): the `config.loss` objective over the model's branches.

BoT is label-smoothed CE on the BNNeck logits plus batch-hard triplet on the
pre-BN feature; SBS swaps in CircleSoftmax and the soft-margin triplet; MGN
and PCB average the same parts over their branches (`jreid.losses.objective`).
Mixed precision, the backbone freeze and the optimiser are the shared
update step's (`jreid.train.update`); this module is the forward and the loss.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jreid import config_blocks, config_rules
from jreid.core import precision
from jreid.core.state import TrainState
from jreid.losses import objective
from jreid.methods import base
from jreid.models.reid import build_model, model_rules


@dataclasses.dataclass(frozen=True)
class Supervised:
  model: nn.Module
  update: Any  # the loop's shared update step (jreid.train.update.Update)
  loss_config: Any

  def init(self, rng: jax.Array, images: jax.Array) -> TrainState:
    variables = self.model.init(rng, images, train=False)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=self.update.init(params))

  def to_compute(self, tree):
    """Params or images in the compute dtype (`train.compute_dtype`); a no-op for float32."""
    return self.update.to_compute(tree)

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

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array):
    (total, (batch_stats, parts)), grads = self.update.value_and_grad(
        self.losses, state.params, state.batch_stats, batch, rng)
    return self.update.apply(state, grads, batch_stats, {"loss": total, **parts})

  def apply_eval(self, state: TrainState, images: jax.Array):
    feature, out = self.model.apply(
        {"params": self.to_compute(state.params), "batch_stats": state.batch_stats},
        self.to_compute(images), train=False)
    return feature.astype(jnp.float32), out

  def features(self, state: TrainState, images: jax.Array) -> jax.Array:
    return self.apply_eval(state, images)[0]

  def spatial_features(self, state: TrainState, images: jax.Array) -> jax.Array:
    """The last backbone map (a ViT's patch tokens) as (B, H*W, C) location features, for DSR."""
    out = self.apply_eval(state, images)[1]
    feature_map = out.get("patch_tokens", out.get("layer4")).astype(jnp.float32)
    return feature_map.reshape(feature_map.shape[0], -1, feature_map.shape[-1])


def build_supervised(config, num_classes: int, make_update) -> Supervised:
  model = build_model(config.model, num_classes,
                      cosine_classifier=objective.cosine_classifier(config.loss))
  return Supervised(model=model, update=make_update(), loss_config=config.loss)


def build(config, num_classes: int, make_update) -> base.Method:
  impl = build_supervised(config, num_classes, make_update)
  return base.method(config.method, init=impl.init, train_step=impl.train_step,
                     features=impl.features, spatial_features=impl.spatial_features, impl=impl)


def validate(config) -> None:
  """`config.model` and `config.loss`; a batch of whole identities (P x K, the loop's sampler)."""
  config_rules.check(config, {"model": model_rules(config.get("model")),
                              "loss": config_blocks.LOSS_RULES})
  check_identity_batches(config)


def check_identity_batches(config) -> None:
  """The loop's default pipeline (`jreid.data.pipeline.IdentitySampler`) draws P x K batches."""
  config_rules.check_multiple(config, "train.batch_size", "data.num_instances",
                              "a batch is P identities x data.num_instances images each")
