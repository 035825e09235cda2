"""Names and array layouts between jreid ReID trees and PyTorch state dicts (numpy only).

A jreid variable is keyed `(collection, path)`, e.g. `("params", ("backbone",
"layer1_0", "bn1", "IN", "scale"))`, with paths from the root of the model that
`jreid.models.reid.build_model` makes. The torch side uses one *canonical*
naming: torchvision's ResNet names for the backbone (no prefix) and FastReID's
`EmbeddingHead` names for the head:

  backbone/conv1/kernel                      conv1.weight
  backbone/layer{i}_{j}/bn1/IN/scale         layer{i}.{j}.bn1.IN.weight
  backbone/layer{i}_{j}/downsample_conv/...  layer{i}.{j}.downsample.0.weight
  backbone/layer{i}_{j}/downsample_bn/...    layer{i}.{j}.downsample.1.*
  head/neck/{scale,bias}, {mean,var}         heads.bottleneck.0.{weight,bias,running_mean,running_var}
  head/classifier/kernel (C, K)              heads.weight (K, C)
  pooling/p (learnable GeM)                  heads.pool_layer.p

Leaves rename as kernel -> weight (convs, the classifier), scale -> weight,
bias -> bias (norms), and running statistics mean/var (collection
`batch_stats`) -> running_mean/running_var. The classifier is written as
`heads.weight`, the name of FastReID >= 1.0 (whose heads feed any of its
softmax variants from one raw weight); the older `heads.classifier.weight` of
FastReID 0.x / BoT is read as well.

A *layout* says how the canonical names are written to a file: "fastreid"
prefixes the backbone with `backbone.` (a FastReID `Baseline` model's
state dict), "torchvision" keeps the bare backbone names and leaves the head
out (a torchvision ResNet without its `fc`). Readers strip `backbone.` anyway.

This is the ResNet family's map (`jreid.convert.maps.RESNET`): `jreid_keys`,
`ignored` and `claims` are what the generic loader asks of it. A plain ResNet
tensor also fills the copies MGN's branches hold (`jreid.models.mgn`).

Nothing here imports torch, so the map is testable and usable (safetensors)
without it.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from jreid.errors import CheckpointMismatchError

PARAMS, STATS = "params", "batch_stats"
COLLECTIONS = (PARAMS, STATS)
LAYOUTS = ("fastreid", "torchvision")

Key = tuple[str, tuple[str, ...]]

# (collection, jreid leaf) -> torch leaf. `weight` is ambiguous the other way
# (kernel or scale); `_is_weight_kernel` decides by the module it belongs to.
_LEAF_TO_TORCH = {
    (PARAMS, "kernel"): "weight",
    (PARAMS, "scale"): "weight",
    (PARAMS, "bias"): "bias",
    (STATS, "mean"): "running_mean",
    (STATS, "var"): "running_var",
}
_TORCH_STATS = {"running_mean": "mean", "running_var": "var"}
# Module names that appear unchanged on both sides inside a backbone block or the stem.
_PLAIN_MODULES = {"conv1", "conv2", "conv3", "bn1", "bn2", "bn3", "IN", "BN"}
_LAYER = re.compile(r"layer(\d+)_(\d+)$")
_CONV = re.compile(r"conv\d+$|downsample_conv$|classifier$")

NECK_BIAS = "heads.bottleneck.0.bias"
# MGN's branches (`jreid.models.mgn`) each hold a copy of the ResNet's later blocks.
MGN_BRANCHES = ("b1", "b2", "b3")


def _is_weight_kernel(module: str) -> bool:
  return bool(_CONV.match(module))


def _backbone_modules_to_torch(modules: tuple[str, ...]) -> list[str] | None:
  out = []
  for module in modules:
    layer = _LAYER.match(module)
    if layer:
      out += [f"layer{layer[1]}", layer[2]]
    elif module == "downsample_conv":
      out += ["downsample", "0"]
    elif module == "downsample_bn":
      out += ["downsample", "1"]
    elif module in _PLAIN_MODULES:
      out.append(module)
    else:
      return None
  return out


def torch_name(key: Key) -> str | None:
  """The canonical torch name of a jreid variable, or None where there is none."""
  collection, path = key
  if key == (PARAMS, ("pooling", "p")):
    return "heads.pool_layer.p"
  if len(path) < 2 or (collection, path[-1]) not in _LEAF_TO_TORCH:
    return None
  leaf = _LEAF_TO_TORCH[(collection, path[-1])]
  root, modules = path[0], path[1:-1]
  if root == "backbone" and modules:
    torch_modules = _backbone_modules_to_torch(modules)
    return None if torch_modules is None else ".".join(torch_modules + [leaf])
  if root == "head" and modules == ("neck",):
    return f"heads.bottleneck.0.{leaf}"
  if root == "head" and modules == ("classifier",) and path[-1] == "kernel":
    return "heads.weight"
  return None


def jreid_key(name: str) -> Key | None:
  """The jreid variable a canonical torch name maps to, or None where there is none."""
  if name in ("heads.weight", "heads.classifier.weight"):
    return PARAMS, ("head", "classifier", "kernel")
  if name == "heads.pool_layer.p":
    return PARAMS, ("pooling", "p")
  parts = name.split(".")
  leaf = parts[-1]
  if name.startswith("heads.bottleneck.0.") and len(parts) == 4:
    modules = ["head", "neck"]
  elif not name.startswith("heads."):
    modules = ["backbone"]
    tokens = parts[:-1]
    while tokens:
      token = tokens.pop(0)
      if re.fullmatch(r"layer\d+", token) and tokens and tokens[0].isdigit():
        modules.append(f"{token}_{tokens.pop(0)}")
      elif token == "downsample" and tokens and tokens[0] in ("0", "1"):
        modules.append("downsample_conv" if tokens.pop(0) == "0" else "downsample_bn")
      elif token in _PLAIN_MODULES:
        modules.append(token)
      else:
        return None
    if len(modules) == 1:
      return None
  else:
    return None
  if leaf in _TORCH_STATS:
    return STATS, tuple(modules + [_TORCH_STATS[leaf]])
  if leaf == "weight":
    return PARAMS, tuple(modules + ["kernel" if _is_weight_kernel(modules[-1]) else "scale"])
  if leaf == "bias":
    return PARAMS, tuple(modules + ["bias"])
  return None


def jreid_keys(name: str, target: Mapping[Key, object]) -> list[Key]:
  """The variables of `target` that a canonical torch name fills (the loader's `WeightMap.jreid_keys`).

  A backbone tensor fills `backbone/...` and, in an MGN model, each branch's
  `b{n}/...` copy: the branches keep the full ResNet's block names (and
  shapes: b2/b3's stride-1 layer4_0 has the same weights), so an ImageNet or
  person pre-trained file fills all three, as FastReID's MGN deep-copies its
  backbone's res_conv4 / res_g_conv5.
  """
  key = jreid_key(name)
  if key is None:
    return []
  collection, path = key
  candidates = [key]
  if path[0] == "backbone":
    candidates += [(collection, (branch,) + path[1:]) for branch in MGN_BRANCHES]
  return [k for k in candidates if k in target]


def ignored(name: str, value: np.ndarray) -> bool:
  """File tensors that fit no variable on purpose: BN's counters, an ImageNet `fc`, and a zero
  neck bias (FastReID's frozen one) where jreid's neck has none."""
  return (name.endswith("num_batches_tracked") or name.startswith("fc.")
          or (name == NECK_BIAS and not np.any(value)))


def claims(flat: Mapping[Key, object]) -> bool:
  """A ResNet-family model: its backbone has the 7x7 stem `conv1` (ResNeSt's deep stem is `conv1_0`)."""
  return any(path[:2] == ("backbone", "conv1") for _, path in flat)


def to_torch_layout(path: tuple[str, ...], value) -> np.ndarray:
  """jreid array -> torch array: conv kernels HWIO -> OIHW, dense kernels (C, K) -> (K, C)."""
  value = np.asarray(value)
  if path[-1] == "kernel" and value.ndim == 4:
    value = value.transpose(3, 2, 0, 1)
  elif path[-1] == "kernel" and value.ndim == 2:
    value = value.T
  return np.ascontiguousarray(value)


def from_torch_layout(path: tuple[str, ...], value) -> np.ndarray:
  """torch array -> jreid array; the inverse of `to_torch_layout`."""
  value = np.asarray(value)
  if path[-1] == "kernel" and value.ndim == 4:
    value = value.transpose(2, 3, 1, 0)
  elif path[-1] == "kernel" and value.ndim == 2:
    value = value.T
  return np.ascontiguousarray(value)


def flatten(variables: Mapping) -> dict[Key, object]:
  """{(collection, path): leaf} for the `params` and `batch_stats` collections of a variables dict."""
  flat = {}

  def walk(collection, prefix, node):
    for name, child in node.items():
      if isinstance(child, Mapping):
        walk(collection, prefix + (name,), child)
      else:
        flat[(collection, prefix + (name,))] = child

  for collection in COLLECTIONS:
    walk(collection, (), variables.get(collection, {}) or {})
  return flat


# Backbones whose layout this map does not cover yet, recognised by a module only they have.
# ResNeSt's shortcut is avg-pool -> conv -> bn (`downsample.1/.2` in torch), so the
# ResNet rule would silently write it under the wrong names.
UNMAPPED_BACKBONES = {("backbone", "conv1_0"): "ResNeSt (deep stem, avg-down shortcut)"}


def check_mappable(flat: Mapping[Key, object]) -> None:
  for _, path in flat:
    if path[:2] in UNMAPPED_BACKBONES:
      raise CheckpointMismatchError(f"{UNMAPPED_BACKBONES[path[:2]]} has no PyTorch name map yet; "
                                    "import/export supports ResNet and ResNet-IBN backbones")


def unflatten(flat: Mapping[Key, object]) -> dict:
  """The inverse of `flatten`: nested plain dicts per collection."""
  tree: dict = {}
  for (collection, path), leaf in flat.items():
    node = tree.setdefault(collection, {})
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = leaf
  return tree


def to_state_dict(variables: Mapping, layout: str = "fastreid") -> tuple[dict[str, np.ndarray], list[str]]:
  """A torch state dict (numpy arrays in torch layout) and the jreid paths that have no torch name.

  In the "fastreid" layout a neck without a bias (BoT's frozen zero bias, which
  jreid expresses as no parameter) is written as zeros, because FastReID's
  BatchNorm always has one and would otherwise refuse a strict load.
  """
  if layout not in LAYOUTS:
    raise ValueError(f"layout={layout!r}; choose one of {LAYOUTS}")
  state, skipped = {}, []
  flat = flatten(variables)
  check_mappable(flat)
  for key, value in flat.items():
    name = torch_name(key)
    if name is None or (layout == "torchvision" and name.startswith("heads.")):
      skipped.append("/".join((key[0],) + key[1]))
      continue
    if layout == "fastreid" and not name.startswith("heads."):
      name = "backbone." + name
    state[name] = to_torch_layout(key[1], value)
  scale = state.get("heads.bottleneck.0.weight")
  if scale is not None and NECK_BIAS not in state:
    state[NECK_BIAS] = np.zeros_like(scale)
  return state, skipped
