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

`config.model` is made by `model_config(meta, backbone)`, the one way to
build it: `meta` picks the meta-architecture, "reid" (this module's `ReID`),
"mgn" (`jreid.models.mgn`) or "pcb" (`jreid.models.pcb`), and each has only
the keys it uses (`reid_config`, `mgn_config`, `pcb_config`), so a setting
never silently does nothing; `model.backbone` is the backbone family's own
section (`jreid.models.backbones.backbone_config`). For example
`model_config("pcb", "resnet50")` is

  meta="pcb", backbone={name="resnet50", width=64, last_stride=1, ibn="", ...},
  pooling="avg", gem_p=3.0, gem_learnable=False, test_feature="neck",
  num_parts=6, part_dim=256, dropout=0.0

Switching to a backbone of another family means replacing the whole section
(`config.model.backbone = backbone_config("resnest50")`), since the families'
options differ. `model_rules(config.model)` gives the types and ranges of a
section's fields (`jreid.config_rules`): `_COMMON_RULES` and each meta's below.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import ml_collections

from jreid.config_rules import Bool, Float, Int, OneOf, Str
from jreid.errors import ConfigError
from jreid.models.backbones import (BACKBONES, backbone_config, backbone_options, backbone_rules,
                                    family_of)
from jreid.models.heads import BNNeck, LinearHead, ReductionHead
from jreid.models.mgn import MGN
from jreid.models.pcb import PCB
from jreid.models.pooling import POOLINGS

TEST_FEATURES = ("neck", "pre_neck")
HEADS = ("bnneck", "linear", "reduction")


def _common(meta: str, backbone: str) -> dict:
  """The keys every meta-architecture has: the backbone section, pooling, the test feature."""
  return dict(
      meta=meta,
      backbone=backbone_config(backbone),
      pooling=family_of(backbone).pooling,  # "avg"; "identity" for a ViT's CLS feature
      gem_p=3.0,
      gem_learnable=False,
      test_feature="neck",  # "neck" (after the BN) | "pre_neck" (pooled)
  )


_COMMON_RULES = dict(
    meta=Str(),  # model_rules checks it against META_CONFIGS
    pooling=OneOf(*POOLINGS), gem_p=Float(0, open_low=True), gem_learnable=Bool(),
    test_feature=OneOf(*TEST_FEATURES),
)
_DROPOUT = Float(0, 1, open_high=True)  # a rate of 1 drops every unit


def reid_config(backbone: str = "resnet50") -> ml_collections.ConfigDict:
  """BoT (Luo et al.) defaults: last stride 1, GAP, BNNeck with no bias, test on the BN feature."""
  return ml_collections.ConfigDict(dict(
      _common("reid", backbone),
      head="bnneck",    # "bnneck" | "linear" (classifier on the pooled feature) | "reduction"
      neck_bias=False,
      embed_dim=0,      # reduction head: output dimension
      dropout=0.0,      # reduction head: dropout after the reduction
  ))


_REID_RULES = dict(head=OneOf(*HEADS), neck_bias=Bool(),
                   embed_dim=Int(0),  # 0 unless head="reduction", which needs it > 0 (build_model)
                   dropout=_DROPOUT)


def mgn_config(backbone: str = "resnet50") -> ml_collections.ConfigDict:
  """MGN: a BNNeck per region; `backbone.last_stride` is the part branches' layer4 stride."""
  return ml_collections.ConfigDict(dict(_common("mgn", backbone), neck_bias=False))


_MGN_RULES = dict(neck_bias=Bool())


def pcb_config(backbone: str = "resnet50") -> ml_collections.ConfigDict:
  """PCB: the paper's 6 stripes reduced to 256 each (test feature num_parts * part_dim)."""
  return ml_collections.ConfigDict(dict(
      _common("pcb", backbone),
      num_parts=6,
      part_dim=256,
      dropout=0.0,      # before each part classifier
  ))


_PCB_RULES = dict(num_parts=Int(1), part_dim=Int(1), dropout=_DROPOUT)

META_CONFIGS = {"reid": reid_config, "mgn": mgn_config, "pcb": pcb_config}
META_RULES = {"reid": _REID_RULES, "mgn": _MGN_RULES, "pcb": _PCB_RULES}
METAS = tuple(META_CONFIGS)


def model_rules(model_cfg) -> dict:
  """The rules of a `config.model` section, for its meta-architecture and backbone family."""
  meta = model_cfg.get("meta") if hasattr(model_cfg, "get") else None
  rules = dict(_COMMON_RULES, meta=OneOf(*METAS))
  if isinstance(meta, str) and meta in META_RULES:
    rules.update(META_RULES[meta])
  backbone = model_cfg.get("backbone") if hasattr(model_cfg, "get") else None
  rules["backbone"] = backbone_rules(backbone) if hasattr(backbone, "get") else {"name": OneOf(*BACKBONES)}
  return rules


def model_config(meta: str = "reid", backbone: str = "resnet50") -> ml_collections.ConfigDict:
  """`config.model` for a meta-architecture and a backbone name, with their defaults."""
  if meta not in META_CONFIGS:
    raise ConfigError(f"model.meta={meta!r}; choose one of {METAS}")
  return META_CONFIGS[meta](backbone)


def check_keys(model_cfg: ml_collections.ConfigDict) -> None:
  """The config holds exactly its meta-architecture's keys; a key of another one is named as such."""
  meta = model_cfg.get("meta")
  if meta not in META_CONFIGS:
    raise ConfigError(f"model.meta={meta!r}; choose one of {METAS}")
  expected = set(META_CONFIGS[meta]().keys())
  got = set(model_cfg.keys())
  for key in sorted(got - expected):
    owners = [m for m, make in META_CONFIGS.items() if key in make().keys()]
    where = f"belongs to model.meta={owners[0]!r}" if owners else "is not a model key"
    raise ConfigError(f"model.{key} {where}, not to model.meta={meta!r}, whose keys are "
                      f"{sorted(expected)}")
  if expected - got:
    raise ConfigError(f"model config lacks {sorted(expected - got)} (make it with "
                      f"jreid.models.reid.model_config({meta!r}, backbone))")


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
    logits = {"branch_logits": (outputs["logits"],)} if "logits" in outputs else {}
    for_losses = {**logits, "branch_features": (outputs["pre_neck"],)}
    return outputs[self.test_feature], {**intermediates, **outputs, **for_losses}


def from_flat_config(flat) -> ml_collections.ConfigDict:
  """A model config of the flat layout (jreid before per-family sections) in today's layout.

  So an older run's `config.json` still builds its model. The flat layout
  kept the keys of other meta-architectures at their defaults, so dropping
  them changes nothing; keys it lacked (added since) take their defaults.
  """
  flat = dict(flat)
  new = model_config(flat.get("meta", "reid"), flat["backbone"]).to_dict()
  for section in (new["backbone"], new):
    for key in section:
      if key not in ("name", "meta", "backbone") and key in flat:
        section[key] = flat[key]
  return ml_collections.ConfigDict(new)


def build_model(model_cfg: ml_collections.ConfigDict, num_classes: int, *,
                cosine_classifier: bool = False, classifier: bool = True) -> nn.Module:
  """Builds the model a config names; `num_classes` comes from the data, never the config.

  `classifier=False` builds the embedding alone (backbone, pooling, neck; no
  `logits`): methods trained without ID labels (cluster contrast's memory).
  """
  check_keys(model_cfg)
  if model_cfg.test_feature not in TEST_FEATURES:
    raise ConfigError(f"model.test_feature={model_cfg.test_feature!r}; choose one of {TEST_FEATURES}")
  if not classifier:
    if model_cfg.meta != "reid":
      raise ConfigError(f"model.meta={model_cfg.meta!r} has no classifier-free form; use 'reid'")
    num_classes = 0
  elif num_classes < 1:
    raise ConfigError(f"num_classes must be positive, got {num_classes}")
  make_pooling = pooling_factory(model_cfg)
  _check_pooling(model_cfg)
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


def _check_pooling(model_cfg: ml_collections.ConfigDict) -> None:
  """A vector backbone (a ViT's CLS feature) has nothing to pool or split into stripes."""
  if family_of(model_cfg.backbone.name).pooling != "identity":
    return
  name = model_cfg.backbone.name
  if model_cfg.meta == "pcb":
    raise ConfigError(f"model.meta='pcb' splits a feature map into stripes, but {name} gives one "
                      "vector per image (its CLS feature); use model.meta='reid'")
  if model_cfg.pooling != "identity":
    raise ConfigError(f"model.pooling={model_cfg.pooling!r} pools a feature map, but {name} gives "
                      "one vector per image (its CLS feature); use model.pooling='identity'")


def pooling_factory(model_cfg: ml_collections.ConfigDict):
  """A function returning a fresh pooling module (MGN needs one per region)."""
  if model_cfg.pooling not in POOLINGS:
    raise ConfigError(f"model.pooling={model_cfg.pooling!r}; choose one of {sorted(POOLINGS)}")
  if model_cfg.pooling == "gem":
    return functools.partial(POOLINGS["gem"], p=model_cfg.gem_p, learnable_p=model_cfg.gem_learnable)
  return POOLINGS[model_cfg.pooling]


def build_backbone(model_cfg: ml_collections.ConfigDict) -> nn.Module:
  """The trunk `model.backbone` names, with its family's options (also the contrastive encoders')."""
  entry, options = backbone_options(model_cfg.backbone)
  return entry(**options)


def _build_mgn(model_cfg, num_classes, make_pooling, cosine_classifier) -> MGN:
  """MGN splits a `ResNet` after layer3_0, so it needs that family (any depth, width, IBN, ResNeXt).

  `backbone.last_stride` is the part branches' layer4 stride (the paper's 1
  is the default); the global branch b1 always keeps stride 2.
  """
  entry, options = backbone_options(model_cfg.backbone)
  if entry.family != "resnet":
    supported = sorted(name for name, e in BACKBONES.items() if e.family == "resnet")
    raise ConfigError(f"model.meta='mgn' splits a ResNet after layer3_0 and does not support "
                      f"model.backbone.name={model_cfg.backbone.name!r}; choose one of {supported}")
  return MGN(resnet=functools.partial(entry, **options), pooling=make_pooling,
             num_classes=num_classes, neck_bias=model_cfg.neck_bias, cosine=cosine_classifier,
             part_stride=options["last_stride"], test_feature=model_cfg.test_feature)
