"""The assembled ReID model: backbone -> pooling -> BNNeck, built from a model config.

Contract (shared by every method): `model.apply(variables, x, train=...)`
takes float32 NHWC normalised images and returns `(feature, intermediates)`.
`feature` is the test-time embedding picked by `test_feature`, *not*
L2-normalised (evaluation normalises when it uses cosine distance).
`intermediates` holds `pre_neck` (pooled, B x C), `neck` (after BN), `logits`
(B x num_classes) and the backbone maps `stem`, `layer1`..`layer4`, plus
the loss contract every meta-architecture keeps: `branch_logits`, a tuple
of (B x num_classes) classifier outputs that each get the softmax loss, and
`branch_features`, a tuple of (B x C) features that each get the metric
loss (one of each here; MGN and PCB have several). In training, call with
`mutable=["batch_stats"]`.

With `cosine_classifier` the classifier returns cosines (for a margin
softmax, see `jreid.losses.margin`) instead of linear logits; the parameter
tree is the same.

The parameter tree is `backbone/...` (see `jreid.models.backbones.resnet`),
`pooling/p` (learnable GeM only), `head/neck/...`, `head/classifier/kernel`.

`meta` picks the meta-architecture: "reid" (this module's `ReID`), "mgn"
(`jreid.models.mgn`) or "pcb" (`jreid.models.pcb`); each documents its
tree. Keys a meta-architecture does not use must stay at their defaults, so
that a setting never silently does nothing.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import ml_collections

from jreid.errors import ConfigError
from jreid.models.backbones import BACKBONES
from jreid.models.backbones.resnet import ResNet
from jreid.models.heads import BNNeck, LinearHead, ReductionHead
from jreid.models.layers import resolve_conv_impl
from jreid.models.mgn import MGN
from jreid.models.pcb import PCB
from jreid.models.pooling import POOLINGS

TEST_FEATURES = ("neck", "pre_neck")
HEADS = ("bnneck", "linear", "reduction")
METAS = ("reid", "mgn", "pcb")
# Keys each meta-architecture ignores; they must keep their default values.
_UNUSED = {
    "reid": ("num_parts", "part_dim"),
    "mgn": ("head", "embed_dim", "dropout", "num_parts", "part_dim", "sa_kernel", "sa_stages"),
    "pcb": ("head", "neck_bias", "embed_dim", "sa_kernel", "sa_stages"),
}


def default_model_config() -> ml_collections.ConfigDict:
  """BoT (Luo et al.) defaults: ResNet-50, last stride 1, GAP, BNNeck with no bias, test on the BN feature."""
  return ml_collections.ConfigDict(dict(
      backbone="resnet50",
      width=64,
      last_stride=1,
      ibn="",          # "" | "a" (IBN-a, FastReID's R50-IBN) | "b" (IBN-b)
      non_local=False,  # FastReID's non-local blocks (R50/R101/ResNeXt/ResNeSt positions)
      pooling="avg",
      gem_p=3.0,
      gem_learnable=False,
      neck_bias=False,
      test_feature="neck",
      head="bnneck",   # "bnneck" | "linear" (classifier on the pooled feature) | "reduction"
      embed_dim=0,     # reduction head: output dimension
      dropout=0.0,     # reduction head: dropout after the reduction; pcb: before each part classifier
      meta="reid",     # "reid" (backbone, pooling, head) | "mgn" (jreid.models.mgn) | "pcb" (jreid.models.pcb)
      num_parts=6,     # pcb: horizontal stripes of the final map (the paper's 6)
      part_dim=256,    # pcb: per-stripe reduced dimension (the paper's 256; test feature num_parts * part_dim)
      conv_impl="auto",  # "auto" (dot_1x1 on CPU, xla on GPU/TPU) | "xla" | "dot_1x1" | "dot"
      sa_kernel=0,     # DASA's SA module after every conv (jreid.models.sa): 0 = none, 5 = the paper's
      sa_stages=(0, 1, 2, 3, 4),  # where: 0 = stem, 1..4 = layer1..layer4 (the paper's Tab. 7)
  ))


class ReID(nn.Module):
  """Backbone, pooling and head as submodules named `backbone`, `pooling`, `head`."""
  backbone: nn.Module
  pooling: nn.Module
  head: nn.Module
  test_feature: str = "neck"

  def __call__(self, x: jax.Array, *, train: bool,
               backbone_train: bool | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`backbone_train` sets the backbone's BN mode apart from the head's (DASA's `sa` strategy
    trains the head with batch statistics but keeps the pre-trained trunk's)."""
    feature_map, intermediates = self.backbone(x, train=train if backbone_train is None
                                               else backbone_train)
    outputs = self.head(self.pooling(feature_map), train=train)
    for_losses = {"branch_logits": (outputs["logits"],), "branch_features": (outputs["pre_neck"],)}
    return outputs[self.test_feature], {**intermediates, **outputs, **for_losses}


def build_model(model_cfg: ml_collections.ConfigDict, num_classes: int, *,
                cosine_classifier: bool = False) -> nn.Module:
  """Builds the model a config names; `num_classes` comes from the data, never the config.

  The config must hold exactly the keys of `default_model_config()`: an
  unknown key is almost always a typo that would otherwise be ignored.
  """
  expected = set(default_model_config().keys())
  got = set(model_cfg.keys())
  if got != expected:
    raise ConfigError(f"model config keys differ from default_model_config(): "
                     f"unknown {sorted(got - expected)}, missing {sorted(expected - got)}")
  for key, table in (("backbone", BACKBONES), ("pooling", POOLINGS)):
    if model_cfg[key] not in table:
      raise ConfigError(f"model.{key}={model_cfg[key]!r}; choose one of {sorted(table)}")
  if model_cfg.test_feature not in TEST_FEATURES:
    raise ConfigError(f"model.test_feature={model_cfg.test_feature!r}; choose one of {TEST_FEATURES}")
  if num_classes < 1:
    raise ConfigError(f"num_classes must be positive, got {num_classes}")

  if model_cfg.meta not in METAS:
    raise ConfigError(f"model.meta={model_cfg.meta!r}; choose one of {METAS}")
  defaults = default_model_config()
  for key in _UNUSED[model_cfg.meta]:
    if model_cfg[key] != defaults[key]:
      raise ConfigError(f"model.{key}={model_cfg[key]!r} has no effect with model.meta="
                        f"{model_cfg.meta!r}; leave it at {defaults[key]!r}")

  make_pooling = pooling_factory(model_cfg)
  if model_cfg.meta == "mgn":
    return _build_mgn(model_cfg, num_classes, make_pooling, cosine_classifier)

  backbone = build_backbone(model_cfg)
  pooling = make_pooling()
  if model_cfg.meta == "pcb":
    if model_cfg.num_parts < 1 or model_cfg.part_dim < 1:
      raise ConfigError(f"model.meta='pcb' needs model.num_parts and model.part_dim > 0, got "
                        f"{model_cfg.num_parts} and {model_cfg.part_dim}")
    return PCB(backbone=backbone, pooling=pooling, num_classes=num_classes,
               num_parts=model_cfg.num_parts, part_dim=model_cfg.part_dim,
               dropout=model_cfg.dropout, cosine=cosine_classifier,
               test_feature=model_cfg.test_feature)
  if model_cfg.head not in HEADS:
    raise ConfigError(f"model.head={model_cfg.head!r}; choose one of {HEADS}")
  if model_cfg.head == "reduction" and model_cfg.embed_dim < 1:
    raise ConfigError("model.head='reduction' needs model.embed_dim > 0")
  if model_cfg.head == "bnneck":
    head = BNNeck(num_classes=num_classes, neck_bias=model_cfg.neck_bias, cosine=cosine_classifier)
  elif model_cfg.head == "linear":
    head = LinearHead(num_classes=num_classes, cosine=cosine_classifier)
  else:
    head = ReductionHead(num_classes=num_classes, embed_dim=model_cfg.embed_dim,
                         dropout=model_cfg.dropout, neck_bias=model_cfg.neck_bias,
                         cosine=cosine_classifier)
  return ReID(backbone=backbone, pooling=pooling, head=head,
              test_feature=model_cfg.test_feature)


def pooling_factory(model_cfg: ml_collections.ConfigDict):
  """A function returning a fresh pooling module (MGN needs one per region)."""
  if model_cfg.pooling not in POOLINGS:
    raise ConfigError(f"model.pooling={model_cfg.pooling!r}; choose one of {sorted(POOLINGS)}")
  if model_cfg.pooling == "gem":
    return functools.partial(POOLINGS["gem"], p=model_cfg.gem_p, learnable_p=model_cfg.gem_learnable)
  return POOLINGS[model_cfg.pooling]


def build_backbone(model_cfg: ml_collections.ConfigDict) -> nn.Module:
  """The config's ResNet-family trunk with its adaption modules (also the contrastive encoders')."""
  if model_cfg.backbone not in BACKBONES:
    raise ConfigError(f"model.backbone={model_cfg.backbone!r}; choose one of {sorted(BACKBONES)}")
  adaption = {}
  if model_cfg.sa_kernel:
    entry = BACKBONES[model_cfg.backbone]
    if getattr(entry, "func", entry) is not ResNet:
      raise ConfigError(f"model.sa_kernel: SA modules are defined for the ResNet family, "
                        f"not model.backbone={model_cfg.backbone!r}")
    if model_cfg.sa_kernel % 2 == 0 or not set(model_cfg.sa_stages) <= {0, 1, 2, 3, 4}:
      raise ConfigError(f"model.sa_kernel must be odd and model.sa_stages within 0..4, got "
                        f"{model_cfg.sa_kernel} and {tuple(model_cfg.sa_stages)}")
    adaption = dict(sa_kernel=model_cfg.sa_kernel, sa_stages=tuple(model_cfg.sa_stages))
  return BACKBONES[model_cfg.backbone](
      width=model_cfg.width, last_stride=model_cfg.last_stride, ibn=model_cfg.ibn,
      non_local=model_cfg.non_local, conv_impl=resolve_conv_impl(model_cfg.conv_impl), **adaption)


def _build_mgn(model_cfg, num_classes, make_pooling, cosine_classifier) -> MGN:
  """MGN splits a `ResNet` after layer3_0, so it needs that class (any depth, width, IBN, ResNeXt).

  `last_stride` is the part branches' layer4 stride (the paper's 1 is the
  default); the global branch b1 always keeps stride 2.
  """
  entry = BACKBONES[model_cfg.backbone]
  supported = sorted(name for name, e in BACKBONES.items() if getattr(e, "func", e) is ResNet)
  if getattr(entry, "func", entry) is not ResNet:
    raise ConfigError(f"model.meta='mgn' splits a ResNet after layer3_0 and does not support "
                      f"model.backbone={model_cfg.backbone!r}; choose one of {supported}")
  resnet = functools.partial(entry, width=model_cfg.width, ibn=model_cfg.ibn,
                             non_local=model_cfg.non_local,
                             conv_impl=resolve_conv_impl(model_cfg.conv_impl))
  return MGN(resnet=resnet, pooling=make_pooling, num_classes=num_classes,
             neck_bias=model_cfg.neck_bias, cosine=cosine_classifier,
             part_stride=model_cfg.last_stride, test_feature=model_cfg.test_feature)
