"""PyTorch weight maps by name: how each architecture family's variables are named in torch files.

`jreid.convert.load` is generic (reading files, unwrapping and stripping
prefixes, copying, the report); everything that depends on an architecture
comes from its `WeightMap`. A backbone family names its map in
`jreid.models.backbones.FAMILIES[...].weights`; `for_backbone(name)` follows
that link, and `resolve(flat)` picks the one map that claims a model's tree
(what `config.init_from` uses, which sees variables, not the config).

A new family (UNet, ...) adds one `WeightMap` to `WEIGHT_MAPS`. Its
`resize` hook is how a tensor of another shape is adapted at load time
(position embeddings for another image size); the report lists every
resized tensor, so nothing is reshaped silently. `canonicalize` renames a
file's tensors to the names the map knows before matching (another
project's naming, one tensor split in two or three joined in one), and
`to_state_dict` writes a model back in one of the map's `layouts` (the first
is the default).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Callable

import numpy as np

from jreid.convert import torch_names, vit_names
from jreid.convert.torch_names import Key
from jreid.errors import CheckpointMismatchError


@dataclasses.dataclass(frozen=True)
class WeightMap:
  """What the generic loader asks of one architecture family.

  `jreid_keys(name, target)`: the variables of `target` (a flat
  `{(collection, path): leaf}`) that a file tensor, by its canonical name
  (prefixes stripped), fills; several where a model holds copies (MGN's
  branches), none where it has no such variable. `torch_name(key)`: the
  canonical name of a variable (for messages and export). `from_torch` /
  `to_torch(path, array)`: array layouts. `ignored(name, array)`: file
  tensors that fit no variable on purpose (BN counters, an ImageNet `fc`),
  reported as such rather than as unused. `resize(key, array, shape)`: an
  array (already in jreid layout) of another shape adapted to `shape`, or
  None to skip it as a shape mismatch (or a CheckpointMismatchError where the
  file cannot fit, which the loader prefixes with the file); None for families
  that never resize. `claims(target)`: whether a model's variables are this
  family's. `canonicalize(state, source)`: the file's tensors (prefixes stripped)
  under the map's canonical names (errors name `source`). `to_state_dict(variables, layout)`: the torch
  state dict of one of `layouts` and the jreid paths left out. `must_fit(key)`:
  whether a file tensor of another shape for this variable is an error rather
  than a skip (a ViT's trunk: a ViT-B file shares a ViT-S's conv stem, so a
  partial load would silently train a model with a random trunk).
  """
  jreid_keys: Callable[[str, Mapping[Key, object]], list[Key]]
  torch_name: Callable[[Key], str | None]
  claims: Callable[[Mapping[Key, object]], bool]
  ignored: Callable[[str, np.ndarray], bool] = lambda name, array: False
  from_torch: Callable[[tuple[str, ...], np.ndarray], np.ndarray] = torch_names.from_torch_layout
  to_torch: Callable[[tuple[str, ...], np.ndarray], np.ndarray] = torch_names.to_torch_layout
  resize: Callable[[Key, np.ndarray, tuple], np.ndarray | None] | None = None
  canonicalize: Callable[[dict[str, np.ndarray], str], dict[str, np.ndarray]] = \
      lambda state, source: dict(state)
  to_state_dict: Callable[[Mapping, str], tuple[dict[str, np.ndarray], list[str]]] = \
      torch_names.to_state_dict
  layouts: tuple[str, ...] = torch_names.LAYOUTS
  must_fit: Callable[[Key], bool] = lambda key: False


# torchvision / FastReID ResNet names, the BNNeck head, MGN's branch copies; never resized.
RESNET = WeightMap(jreid_keys=torch_names.jreid_keys, torch_name=torch_names.torch_name,
                   claims=torch_names.claims, ignored=torch_names.ignored)

# timm / DINO / TransReID-SSL ViTs (the ICS stem included) and OpenAI / Hugging Face CLIP towers.
VIT = WeightMap(jreid_keys=vit_names.jreid_keys(vit_names.timm_name), torch_name=vit_names.timm_name,
                claims=vit_names.claims_vit, ignored=vit_names.ignored_timm,
                from_torch=vit_names.from_torch, to_torch=vit_names.to_torch,
                resize=vit_names.resizer("bicubic"), canonicalize=vit_names.canonical_timm,
                to_state_dict=vit_names.timm_to_state_dict, layouts=("timm", "transreid", "dino"),
                must_fit=vit_names.in_backbone)
CLIP = WeightMap(jreid_keys=vit_names.jreid_keys(vit_names.clip_name), torch_name=vit_names.clip_name,
                 claims=vit_names.claims_clip, ignored=vit_names.ignored_clip,
                 from_torch=vit_names.from_torch, to_torch=vit_names.to_torch_clip,
                 resize=vit_names.resizer("bilinear"), canonicalize=vit_names.canonical_clip,
                 to_state_dict=vit_names.clip_to_state_dict, layouts=("openai",),
                 must_fit=vit_names.in_backbone)

WEIGHT_MAPS: dict[str, WeightMap] = {"resnet": RESNET, "vit": VIT, "clip": CLIP}


def get(name: str) -> WeightMap:
  if name not in WEIGHT_MAPS:
    raise CheckpointMismatchError(f"no PyTorch weight map {name!r}; registered: {sorted(WEIGHT_MAPS)}")
  return WEIGHT_MAPS[name]


def for_backbone(backbone: str) -> WeightMap:
  """The map of a backbone name's family (`jreid.models.backbones`)."""
  from jreid.models.backbones import family_of  # models import flax; the loader itself need not
  family = family_of(backbone)
  if family.weights is None:
    raise CheckpointMismatchError(f"{backbone} ({family.module.__name__}) has no PyTorch weight "
                                  f"map yet; maps exist for {sorted(WEIGHT_MAPS)}")
  return get(family.weights)


def resolve(target: Mapping[Key, object], name: str | None = None) -> WeightMap:
  """The map `name` gives, or else the one map that claims `target`'s variables."""
  if name is not None:
    return get(name)
  claimed = [n for n, weight_map in WEIGHT_MAPS.items() if weight_map.claims(target)]
  if len(claimed) > 1:
    raise CheckpointMismatchError(f"weight maps {claimed} all claim this model; name one")
  if not claimed:
    torch_names.check_mappable(target)  # names the known unmapped backbones (ResNeSt)
    roots = sorted({"/".join(path[:2]) for _, path in target})[:4]
    raise CheckpointMismatchError(f"no PyTorch weight map claims this model (it has {roots}); "
                                  f"maps exist for {sorted(WEIGHT_MAPS)}")
  return WEIGHT_MAPS[claimed[0]]
