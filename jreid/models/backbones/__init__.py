"""Backbones by name, grouped in families; a family owns its config section and its weight map.

`BACKBONES[name]` is a `Backbone`: the family and the architecture the name
fixes (depth, block, ResNeXt groups, FastReID's non-local positions);
`BACKBONES[name](**options)` builds the flax module, whose call contract is
`(x, *, train) -> (map, intermediates)`.

`config.model.backbone` is a section `{"name": ..., **options}` made by
`backbone_config(name)` from the family's defaults, and `backbone_rules(section)`
are the types and ranges of its fields (`jreid.config_rules`). `backbone_options(section)`
checks its keys against the module's dataclass fields, so a misspelt option
is an error naming the known ones instead of a setting that silently does
nothing. A family's `weights` names its PyTorch name map in
`jreid.convert.maps.WEIGHT_MAPS` (a string, so models never import the
converters).

A family's `pooling` is the default `model.pooling` for its output: "avg" for
the CNNs' feature maps, "identity" for the transformers, whose feature is
already one vector per image (the CLS token). A name's `defaults` override its
family's option defaults (`vit_base` is `vit_small` with other widths), so a
preset can still shrink any of them.

A new family adds one `Family` to `FAMILIES` and its names to `BACKBONES`;
nothing is registered by import side effect.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import flax.linen as nn
import ml_collections

from jreid.config_rules import Bool, Float, Int, OneOf, Tuple
from jreid.errors import ConfigError
from jreid.models.backbones.resnest import ResNeSt
from jreid.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
from jreid.models.backbones.vit import VisionTransformer
from jreid.models.layers import resolve_conv_impl

# Module fields every flax module has; never config options.
_FLAX_FIELDS = frozenset({"parent", "name"})


@dataclasses.dataclass(frozen=True)
class Family:
  """What the config layer needs of an architecture family.

  `options`: the config section's defaults (without `name`). `fixed`: module
  fields the backbone name or the calling code decides (depth, MGN's block
  range), never a config key. `prepare` turns config values into module
  values (e.g. `conv_impl="auto"` -> the backend's). `weights`: its
  `jreid.convert.maps.WEIGHT_MAPS` name, None where no PyTorch map exists yet.
  `rules`: each option's type and range (`jreid.config_rules`). `pooling`: the
  `model.pooling` its output needs by default ("identity" for a vector).
  """
  module: type[nn.Module]
  options: Callable[[], dict[str, Any]]
  rules: Mapping[str, Any]
  fixed: frozenset[str] = frozenset()
  prepare: Callable[[dict[str, Any]], dict[str, Any]] = lambda options: options
  weights: str | None = None
  pooling: str = "avg"

  def option_keys(self) -> list[str]:
    """The config keys this family accepts: its module's fields less the fixed ones."""
    fields = {f.name for f in dataclasses.fields(self.module)}
    return sorted(fields - self.fixed - _FLAX_FIELDS)


@dataclasses.dataclass(frozen=True)
class Backbone:
  """A backbone name: its family (a `FAMILIES` key), the module fields the name fixes, and its
  own defaults for the family's options."""
  family: str
  architecture: Mapping[str, Any]
  defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def options(self) -> dict[str, Any]:
    return {**FAMILIES[self.family].options(), **self.defaults}

  def __call__(self, **options) -> nn.Module:
    return FAMILIES[self.family].module(**self.architecture, **options)


def _resnet_options() -> dict[str, Any]:
  return dict(
      width=64,          # base channels; 8 or 16 give tiny CPU/test variants
      last_stride=1,     # 1 keeps layer4 at stride 16 (BoT); MGN: the part branches' stride
      ibn="",            # "" | "a" (IBN-a, FastReID's R50-IBN) | "b" (IBN-b)
      non_local=False,   # FastReID's non-local blocks (positions fixed per name)
      conv_impl="auto",  # "auto" (dot_1x1 on CPU, xla on GPU/TPU) | "xla" | "dot_1x1" | "dot"
      sa_kernel=0,       # DASA's SA module after every conv (jreid.models.sa): 0 = none, 5 = the paper's
      sa_stages=(0, 1, 2, 3, 4),  # where: 0 = stem, 1..4 = layer1..layer4 (the paper's Tab. 7)
  )


_CONV_IMPLS = OneOf("auto", "xla", "dot_1x1", "dot")  # "auto" + jreid.models.layers.CONV_IMPLS
_RESNET_RULES = dict(
    width=Int(1), last_stride=OneOf(1, 2),
    ibn=OneOf("", "a", "b") | Bool(),  # True is IBN-a (resnet.py)
    non_local=Bool(), conv_impl=_CONV_IMPLS,
    sa_kernel=OneOf(0) | Int(1, odd=True),  # 0: no SA module; else a centred (odd) kernel
    sa_stages=Tuple(Int(0, 4)),
)


def _prepare_resnet(options: dict[str, Any]) -> dict[str, Any]:
  if options["sa_kernel"] and (options["sa_kernel"] % 2 == 0
                               or not set(options["sa_stages"]) <= {0, 1, 2, 3, 4}):
    raise ConfigError(f"model.backbone.sa_kernel must be odd and model.backbone.sa_stages within "
                      f"0..4, got {options['sa_kernel']} and {tuple(options['sa_stages'])}")
  return {**options, "conv_impl": resolve_conv_impl(options["conv_impl"]),
          "sa_stages": tuple(options["sa_stages"])}


def _resnest_options() -> dict[str, Any]:
  return dict(width=64, last_stride=1, non_local=False, conv_impl="auto")


_RESNEST_RULES = dict(width=Int(1), last_stride=OneOf(1, 2), non_local=Bool(), conv_impl=_CONV_IMPLS)


def _prepare_resnest(options: dict[str, Any]) -> dict[str, Any]:
  return {**options, "conv_impl": resolve_conv_impl(options["conv_impl"])}


def _vit_options() -> dict[str, Any]:
  return dict(
      embed_dim=384, depth=12, num_heads=6,  # ViT-S/16; narrower and shallower for CPU presets
      mlp_ratio=4.0,
      patch_size=16,
      stride=16,         # < patch_size: TransReID's overlapping patches (12)
      drop_path=0.0,     # stochastic depth of the last block, linear from 0 over depth
      dropout=0.0,
  )


def _vit_ics_options() -> dict[str, Any]:
  return {**_vit_options(), "stem_channels": 64}  # the IBN conv stem's width (TransReID-SSL: 64)


def _clip_options() -> dict[str, Any]:
  return {**_vit_options(), "embed_dim": 768, "num_heads": 12,
          "proj_dim": 512}  # ln_post(CLS) @ proj: CLIP's joint image-text space


_RATE = Float(0, 1, open_high=True)
_VIT_RULES = dict(embed_dim=Int(1), depth=Int(1), num_heads=Int(1),
                  mlp_ratio=Float(0, open_low=True), patch_size=Int(1), stride=Int(1),
                  drop_path=_RATE, dropout=_RATE)
_VIT_ICS_RULES = dict(_VIT_RULES, stem_channels=Int(2))  # IBN splits the channels in halves
_CLIP_RULES = dict(_VIT_RULES, proj_dim=Int(0))
_VIT_SWITCHES = frozenset({"stem", "norm_eps", "activation", "norm_pre", "patch_bias"})


def _prepare_vit(options: dict[str, Any]) -> dict[str, Any]:
  if options["embed_dim"] % options["num_heads"]:
    raise ConfigError(f"model.backbone.embed_dim={options['embed_dim']} must be a multiple of "
                      f"model.backbone.num_heads={options['num_heads']}")
  if options["stride"] > options["patch_size"]:
    raise ConfigError(f"model.backbone.stride={options['stride']} skips pixels between "
                      f"{options['patch_size']}-pixel patches; use stride <= patch_size")
  return options


FAMILIES = {
    "resnet": Family(ResNet, _resnet_options, _RESNET_RULES, prepare=_prepare_resnet, weights="resnet",
                     fixed=frozenset({"block", "stage_sizes", "non_local_stages", "groups",
                                      "width_per_group", "first", "last"})),
    # No PyTorch map yet: its shortcut (avg-pool -> conv -> bn) differs from ResNet's.
    "resnest": Family(ResNeSt, _resnest_options, _RESNEST_RULES, prepare=_prepare_resnest,
                      fixed=frozenset({"stage_sizes", "non_local_stages", "radix"})),
    "vit": Family(VisionTransformer, _vit_options, _VIT_RULES, prepare=_prepare_vit, weights="vit",
                  pooling="identity", fixed=_VIT_SWITCHES | {"proj_dim", "stem_channels"}),
    "vit_ics": Family(VisionTransformer, _vit_ics_options, _VIT_ICS_RULES, prepare=_prepare_vit,
                      weights="vit", pooling="identity", fixed=_VIT_SWITCHES | {"proj_dim"}),
    "clip": Family(VisionTransformer, _clip_options, _CLIP_RULES, prepare=_prepare_vit,
                   weights="clip", pooling="identity", fixed=_VIT_SWITCHES | {"stem_channels"}),
}

# FastReID's nl_layers_per_stage: non-local blocks after the last n blocks of each stage.
_NL_50 = (0, 2, 3, 0)
_NL_101 = (0, 2, 9, 0)


def _resnet(block=Bottleneck, **architecture) -> Backbone:
  return Backbone("resnet", dict(block=block, **architecture))


_TIMM = dict(norm_eps=1e-6, activation="gelu", norm_pre=False, patch_bias=True, proj_dim=0)
_VIT_B = dict(embed_dim=768, num_heads=12)

BACKBONES = {
    "resnet18": _resnet(BasicBlock, stage_sizes=(2, 2, 2, 2)),
    "resnet34": _resnet(BasicBlock, stage_sizes=(3, 4, 6, 3)),
    "resnet50": _resnet(stage_sizes=(3, 4, 6, 3), non_local_stages=_NL_50),
    "resnet101": _resnet(stage_sizes=(3, 4, 23, 3), non_local_stages=_NL_101),
    "resnet152": _resnet(stage_sizes=(3, 8, 36, 3)),
    "resnext50": _resnet(stage_sizes=(3, 4, 6, 3), non_local_stages=_NL_50, groups=32,
                         width_per_group=4),
    "resnext101": _resnet(stage_sizes=(3, 4, 23, 3), non_local_stages=_NL_101, groups=32,
                          width_per_group=4),
    "resnest50": Backbone("resnest", dict(stage_sizes=(3, 4, 6, 3), non_local_stages=_NL_50)),
    # timm / DINO names; `_ics`: TransReID-SSL's IBN conv stem before the patch conv.
    "vit_small": Backbone("vit", dict(_TIMM, stem="patch")),
    "vit_base": Backbone("vit", dict(_TIMM, stem="patch"), _VIT_B),
    "vit_small_ics": Backbone("vit_ics", dict(_TIMM, stem="ics")),
    "vit_base_ics": Backbone("vit_ics", dict(_TIMM, stem="ics"), _VIT_B),
    # OpenAI CLIP's ViT-B/16 image tower (DCAC's encoder).
    "clip_vit_b16": Backbone("clip", dict(stem="patch", norm_eps=1e-5, activation="quick_gelu",
                                          norm_pre=True, patch_bias=False)),
}


def family_of(name: str) -> Family:
  if name not in BACKBONES:
    raise ConfigError(f"model.backbone.name={name!r}; choose one of {sorted(BACKBONES)}")
  return FAMILIES[BACKBONES[name].family]


def backbone_config(name: str = "resnet50") -> ml_collections.ConfigDict:
  """`config.model.backbone` for `name`: the name and its family's default options."""
  family_of(name)
  return ml_collections.ConfigDict({"name": name, **BACKBONES[name].options()})


def backbone_rules(section: Mapping[str, Any]) -> dict[str, Any]:
  """The rules of a `model.backbone` section: its name, then its family's options (if the name is known)."""
  name_rule = OneOf(*BACKBONES)
  name = section.get("name") if isinstance(section, (Mapping, ml_collections.ConfigDict)) else None
  if not isinstance(name, str) or name not in BACKBONES:
    return {"name": name_rule}
  return {"name": name_rule, **FAMILIES[BACKBONES[name].family].rules}


def backbone_options(section: Mapping[str, Any]) -> tuple[Backbone, dict[str, Any]]:
  """The backbone a config section names and its module options (defaults filled, checked)."""
  if not isinstance(section, (Mapping, ml_collections.ConfigDict)) or "name" not in section:
    raise ConfigError(f"model.backbone must be a section with a `name` (see "
                      f"jreid.models.backbones.backbone_config), got {section!r}")
  family = family_of(section["name"])
  options = {k: v for k, v in section.items() if k != "name"}
  known = family.option_keys()
  unknown = sorted(set(options) - set(known))
  if unknown:
    raise ConfigError(f"model.backbone.{unknown[0]} is not an option of {section['name']} "
                      f"({family.module.__name__}); known: {known}")
  entry = BACKBONES[section["name"]]
  return entry, family.prepare({**entry.options(), **options})
