"""The encoder contrastive pre-training trains: backbone -> pooling -> projection MLP.

Parameter tree `backbone/...` (the same names as `jreid.models.reid.ReID`'s,
so a fine-tuning run's `config.init_from` copies the pre-trained trunk and
nothing else), `pooling/p` (learnable GeM only) and `projector/{hidden,out}`.
Returns the L2-normalised projection and the intermediates of the model
contract (`pre_neck` is the pooled backbone feature: what evaluation and the
downstream ReID model use; the projection is discarded after pre-training,
as in MoCo).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jreid.config_rules import Bool, Float, OneOf
from jreid.errors import ConfigError
from jreid.models.backbones import BACKBONES, backbone_config, backbone_rules, family_of
from jreid.models.pooling import POOLINGS
from jreid.models.reid import build_backbone, pooling_factory


class ProjectionHead(nn.Module):
  """MoCo v2's MLP head, Linear-ReLU-Linear (2048-2048-ReLU-128 for ResNet-50), then L2 norm."""
  hidden: int = 2048
  dim: int = 128

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.relu(nn.Dense(self.hidden, name="hidden")(x))
    x = nn.Dense(self.dim, name="out")(x).astype(jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class ContrastiveEncoder(nn.Module):
  backbone: nn.Module
  pooling: nn.Module
  projector: nn.Module

  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    feature_map, intermediates = self.backbone(x, train=train)
    pooled = self.pooling(feature_map)
    return self.projector(pooled), {**intermediates, "pre_neck": pooled}


def encoder_config(backbone: str = "resnet50") -> ml_collections.ConfigDict:
  """`config.model` of contrastive pre-training: a backbone section and its pooling, no head.

  The head and test-feature keys of `jreid.models.reid.model_config` have no
  meaning here (the projection head's sizes are the method's), so they are
  not keys at all.
  """
  return ml_collections.ConfigDict(dict(backbone=backbone_config(backbone),
                                        pooling=family_of(backbone).pooling,  # a ViT: "identity"
                                        gem_p=3.0, gem_learnable=False))


def encoder_rules(model_cfg) -> dict:
  """The rules of `encoder_config`'s fields (`jreid.config_rules`), for its backbone's family."""
  backbone = model_cfg.get("backbone") if hasattr(model_cfg, "get") else None
  return dict(backbone=backbone_rules(backbone) if hasattr(backbone, "get") else
              {"name": OneOf(*BACKBONES)},
              pooling=OneOf(*POOLINGS), gem_p=Float(0, open_low=True), gem_learnable=Bool())


def build_encoder(model_cfg: ml_collections.ConfigDict, hidden: int, dim: int) -> ContrastiveEncoder:
  """The config's backbone and pooling with a projection head."""
  expected, got = set(encoder_config().keys()), set(model_cfg.keys())
  if got != expected:
    raise ConfigError(f"a contrastive encoder's model config has the keys {sorted(expected)} "
                      f"(jreid.models.contrastive.encoder_config); unknown {sorted(got - expected)}, "
                      f"missing {sorted(expected - got)}")
  return ContrastiveEncoder(backbone=build_backbone(model_cfg), pooling=pooling_factory(model_cfg)(),
                            projector=ProjectionHead(hidden=hidden, dim=dim))
