"""PyTorch names of jreid's vision transformers: timm / DINO / TransReID-SSL and OpenAI CLIP.

Two `jreid.convert.maps.WeightMap`s over the one `VisionTransformer` tree
(`jreid.models.backbones.vit`):

  jreid                                timm / DINO (`VIT`)           OpenAI CLIP (`CLIP`)
  backbone/patch_embed/proj/kernel     patch_embed.proj.weight       visual.conv1.weight
  backbone/patch_embed/conv{1,2,3}     patch_embed.conv.{0,3,6}      (ICS stem only)
  backbone/patch_embed/norm{1,2,3}     patch_embed.conv.{1,4,7}      (IBN: .IN / .BN)
  backbone/cls_token (D,)              cls_token (1, 1, D)           visual.class_embedding (D,)
  backbone/cls_pos_embed, pos_embed    pos_embed (1, 1+h*w, D)       visual.positional_embedding (1+h*w, D)
  backbone/norm_pre                    -                             visual.ln_pre
  backbone/blocks_{i}/norm1            blocks.{i}.norm1              visual.transformer.resblocks.{i}.ln_1
  .../attn/qkv (D, 3D)                 blocks.{i}.attn.qkv           ....attn.in_proj_{weight,bias}
  .../attn/proj                        blocks.{i}.attn.proj          ....attn.out_proj
  .../norm2, mlp/fc1, mlp/fc2          blocks.{i}.{norm2,mlp.fc1,..} ....{ln_2, mlp.c_fc, mlp.c_proj}
  backbone/norm                        norm                          visual.ln_post
  backbone/proj (D, 512)               -                             visual.proj (D, 512), same layout
  head/neck, head/classifier           bottleneck.*, classifier.weight (TransReID / CLIP-ReID heads)
  projector/mlp_{0,2,4} (DINO head)    head.mlp.{0,2,4}              -
  projector/last_layer/weight_v (K, O) head.last_layer.weight_v (O, K), weight_g (O, 1) (ones when fixed)

A file's position embedding (CLS row + grid rows) is split on reading into
the pseudo-names `pos_embed.cls` / `pos_embed.grid` (CLIP: `positional_
embedding.*`), and the grid is resized when the model's token grid differs:
a square grid (every published ViT is pre-trained on square images) is
resized to the model's (h, w), bicubic for timm/DINO files (TransReID-SSL),
bilinear for CLIP (DCAC, CLIP-ReID), both as torch's `interpolate`
without antialiasing (`jreid.core.resize`); a grid of exactly h*w tokens is
the model's own. Anything else cannot be resized and is an error naming the
file's and the model's shapes.

Hugging Face CLIP files (`vision_model.*`, separate q/k/v) are renamed to
OpenAI's first (`jreid.convert.clip_names`); CLIP-ReID/DCAC checkpoints name the
tower `image_encoder.` and a saved bare tower has no prefix: both read as
`visual.`.

DINO's projection head (`jreid.models.dino_head`, a DINO run's `projector/`)
has the names of DINO's `DINOHead` inside its `MultiCropWrapper` (`head.`; the
loader keeps that prefix, so a DINO checkpoint fills a jreid DINO model's head
and is ignored by a ReID model, which has none).

Export layouts: "timm" (the bare backbone, as DINO's and TransReID-SSL's
`VisionTransformer` hold it), "transreid" (`base.` + `bottleneck` + `classifier`,
TransReID-SSL's ReID model), "dino" (one DINO network as main_dino.py's
`MultiCropWrapper` holds it: `backbone.` + the head's `head.*`, with the fixed
weight norm `head.last_layer.weight_g` written as ones; `jreid.convert.export`
puts a run's teacher and student together as DINO's checkpoint) and "openai"
(the tower's `visual.*` names, as in OpenAI's CLIP state dict).
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

from jreid.convert import torch_names
from jreid.convert.torch_names import PARAMS, STATS, Key
from jreid.errors import CheckpointMismatchError

_LEAF = {(PARAMS, "kernel"): "weight", (PARAMS, "scale"): "weight", (PARAMS, "bias"): "bias",
         (STATS, "mean"): "running_mean", (STATS, "var"): "running_var"}
_ICS = {"conv1": "0", "norm1": "1", "conv2": "3", "norm2": "4", "conv3": "6", "norm3": "7"}
_BLOCK = re.compile(r"blocks_(\d+)$")
# timm module -> OpenAI module inside a block
_CLIP_BLOCK = {("norm1",): "ln_1", ("attn", "proj"): "attn.out_proj", ("norm2",): "ln_2",
               ("mlp", "fc1"): "mlp.c_fc", ("mlp", "fc2"): "mlp.c_proj"}
_CLIP_TOP = {"norm_pre": "ln_pre", "norm": "ln_post"}
_HEAD = {("neck",): "bottleneck", ("classifier",): "classifier"}
_DINO_MLP = re.compile(r"mlp(?:_(\d+))?$")  # `mlp` (one layer) or `mlp_{i}` (Sequential index i)
_DINO_LAST = ("weight_v", "weight_g")  # torch weight_norm's direction and norm


def _leaf(collection: str, leaf: str) -> str | None:
  return _LEAF.get((collection, leaf))


def _timm_backbone(collection: str, path: tuple[str, ...]) -> str | None:
  if path == ("cls_token",):
    return "cls_token"
  if path == ("pos_embed",):
    return "pos_embed.grid"
  if path == ("cls_pos_embed",):
    return "pos_embed.cls"
  leaf = _leaf(collection, path[-1])
  if leaf is None:
    return None
  modules = path[:-1]
  if modules[:1] == ("patch_embed",):
    rest = modules[1:]
    if rest == ("proj",):
      return f"patch_embed.proj.{leaf}"
    if rest and rest[0] in _ICS:
      return ".".join(("patch_embed", "conv", _ICS[rest[0]]) + rest[1:] + (leaf,))
    return None
  block = _BLOCK.match(modules[0]) if modules else None
  if block:
    return ".".join(("blocks", block[1]) + modules[1:] + (leaf,))
  if modules == ("norm",):
    return f"norm.{leaf}"
  return None


_CLIP_SPECIAL = {("cls_token",): "class_embedding", ("pos_embed",): "positional_embedding.grid",
                 ("cls_pos_embed",): "positional_embedding.cls", ("proj",): "proj",
                 ("patch_embed", "proj", "kernel"): "conv1.weight"}


def _clip_backbone(collection: str, path: tuple[str, ...]) -> str | None:
  if path in _CLIP_SPECIAL:
    return "visual." + _CLIP_SPECIAL[path]
  leaf = _leaf(collection, path[-1])
  modules = path[:-1]
  if leaf is None or not modules:
    return None
  if len(modules) == 1 and modules[0] in _CLIP_TOP:
    return f"visual.{_CLIP_TOP[modules[0]]}.{leaf}"
  block = _BLOCK.match(modules[0])
  if not block:
    return None
  prefix = f"visual.transformer.resblocks.{block[1]}."
  if modules[1:] == ("attn", "qkv"):
    return prefix + f"attn.in_proj_{leaf}"
  inner = _CLIP_BLOCK.get(modules[1:])
  return None if inner is None else prefix + f"{inner}.{leaf}"


def _head(collection: str, path: tuple[str, ...]) -> str | None:
  module = _HEAD.get(path[1:-1])
  leaf = _leaf(collection, path[-1])
  if module is None or leaf is None or (module == "classifier" and path[-1] != "kernel"):
    return None
  return f"{module}.{leaf}"


def _dino_head(collection: str, path: tuple[str, ...]) -> str | None:
  """`projector/mlp_{i}/{kernel,bias}` -> `head.mlp.{i}.*`, `projector/last_layer/weight_{v,g}` ->
  `head.last_layer.weight_{v,g}` (DINO's `DINOHead`); None for another projector (MoCo's)."""
  if collection != PARAMS or len(path) != 3:
    return None
  module, leaf = path[1], path[2]
  if module == "last_layer":
    return f"head.last_layer.{leaf}" if leaf in _DINO_LAST else None
  mlp = _DINO_MLP.match(module)
  name = _leaf(collection, leaf)
  if mlp is None or name is None:
    return None
  return ".".join(("head", "mlp") + ((mlp[1],) if mlp[1] is not None else ()) + (name,))


def _namer(backbone_name, heads):
  def torch_name(key: Key) -> str | None:
    collection, path = key
    if len(path) < 2:
      return None
    if path[0] == "backbone":
      return backbone_name(collection, path[1:])
    if path[0] in heads:
      return heads[path[0]](collection, path)
    return None
  return torch_name


timm_name = _namer(_timm_backbone, {"head": _head, "projector": _dino_head})
clip_name = _namer(_clip_backbone, {"head": _head})


def jreid_keys(torch_name):
  """A map's `jreid_keys` from its `torch_name`: the variables of the target that bear the name."""
  def keys(name: str, target: Mapping[Key, object]) -> list[Key]:
    return [key for key in target if torch_name(key) == name]
  return keys


# --- position embeddings: one file tensor, two variables ------------------------------------

def split_positions(state: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
  """`name` (CLS row + grid rows, with or without timm's batch axis) as `name.cls` / `name.grid`."""
  if name not in state:
    return state
  value = np.asarray(state.pop(name))
  rows = value.reshape(-1, value.shape[-1])
  return {**state, f"{name}.cls": rows[0], f"{name}.grid": rows[1:]}


def join_positions(state: dict[str, np.ndarray], name: str, batch_axis: bool) -> dict[str, np.ndarray]:
  """The inverse of `split_positions` for export: the grid flattened row-major after the CLS row."""
  cls, grid = state.pop(f"{name}.cls", None), state.pop(f"{name}.grid", None)
  if cls is None or grid is None:
    return state
  rows = np.concatenate([cls[None], grid.reshape(-1, grid.shape[-1])])
  return {**state, name: rows[None] if batch_axis else rows}


def resizer(method: str):
  def resize(key: Key, array: np.ndarray, shape: tuple) -> np.ndarray | None:
    """The file's (N, D) grid rows as the model's (h, w, D) grid, or None for other variables."""
    if key[1][-1] != "pos_embed" or array.ndim != 2 or len(shape) != 3:
      return None
    h, w, width = shape
    tokens = array.shape[0]
    if array.shape[1] != width:
      return None  # another embedding width: a shape mismatch like any other
    if tokens == h * w:
      return array.reshape(h, w, width)
    side = math.isqrt(tokens)
    if side * side != tokens:
      raise CheckpointMismatchError(
          f"its position embedding has {tokens} patch tokens, which is not a square grid, so it "
          f"cannot be resized to the model's {h}x{w} grid (expected {h * w} tokens of width "
          f"{width}, found {tokens}); use the image size it was trained at")
    from jreid.core.resize import resize_grid
    return resize_grid(array.reshape(side, side, width), (h, w), method)
  return resize


# --- layouts --------------------------------------------------------------------------------

def from_torch(path: tuple[str, ...], value) -> np.ndarray:
  value = np.asarray(value)
  if path[-1] == "cls_token":
    return value.reshape(-1)
  if path[-1] in _DINO_LAST:
    return np.ascontiguousarray(value.T)
  return torch_names.from_torch_layout(path, value)


def to_torch(path: tuple[str, ...], value) -> np.ndarray:
  """timm's layout: the CLS token with batch and token axes (1, 1, D); DINO's weight-normalised
  last layer as torch's (out, in) Linear: `weight_v` (K, O) -> (O, K), `weight_g` (1, O) -> (O, 1)."""
  value = np.asarray(value)
  if path[-1] == "cls_token":
    return value.reshape(1, 1, -1)
  if path[-1] in _DINO_LAST:
    return np.ascontiguousarray(value.T)
  return torch_names.to_torch_layout(path, value)


def to_torch_clip(path: tuple[str, ...], value) -> np.ndarray:
  """OpenAI's layout: `class_embedding` is a plain (D,) vector."""
  return np.asarray(value) if path[-1] == "cls_token" else torch_names.to_torch_layout(path, value)


def canonical_timm(state: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
  return split_positions(dict(state), "pos_embed")


def canonical_clip(state: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
  if any(name.startswith("vision_model.") for name in state):
    from jreid.convert.clip_names import openai_from_hf
    state = openai_from_hf(state, source=source)
  state = dict(state)
  if any(name.startswith("image_encoder.") for name in state):  # CLIP-ReID / DCAC
    state = {("visual." + n[len("image_encoder."):] if n.startswith("image_encoder.") else n): v
             for n, v in state.items()}
  if not any(name.startswith("visual.") for name in state) and "class_embedding" in state:
    bare = ("conv1.", "class_embedding", "positional_embedding", "ln_pre.", "transformer.",
            "ln_post.", "proj")
    state = {("visual." + n if n.startswith(bare) else n): v for n, v in state.items()}
  return split_positions(state, "visual.positional_embedding")


def _fixed(state: dict[str, np.ndarray], head_prefix: str) -> dict[str, np.ndarray]:
  """The constants torch holds and jreid has no parameter for: TransReID's frozen zero neck bias
  and a DINO head's fixed weight norm g (ones, one per output unit)."""
  neck = f"{head_prefix}bottleneck.weight"
  if neck in state and f"{head_prefix}bottleneck.bias" not in state:
    state[f"{head_prefix}bottleneck.bias"] = np.zeros_like(state[neck])
  last = f"{head_prefix}head.last_layer.weight_"
  if last + "v" in state and last + "g" not in state:
    state[last + "g"] = np.ones((state[last + "v"].shape[0], 1), state[last + "v"].dtype)
  return state


def _export(torch_name, layout_of, position_name: str, batch_axis: bool,
            prefixes: Mapping[str, tuple[str, Mapping[str, str]]]):
  """A map's `to_state_dict(variables, layout)`: its names per layout, heads included or not.

  `prefixes[layout]` is (backbone prefix, {head root: its prefix}); the heads
  whose root (`head`, `projector`) is not named there are left out.
  """
  def to_state_dict(variables: Mapping, layout: str) -> tuple[dict[str, np.ndarray], list[str]]:
    if layout not in prefixes:
      raise CheckpointMismatchError(f"layout {layout!r} is not one of this model's: {sorted(prefixes)}")
    backbone_prefix, heads = prefixes[layout]
    state, skipped = {}, []
    for key, value in torch_names.flatten(variables).items():
      name, root = torch_name(key), key[1][0]
      if name is None or (root != "backbone" and root not in heads):
        skipped.append("/".join((key[0],) + key[1]))
        continue
      prefix = backbone_prefix if root == "backbone" else heads[root]
      state[prefix + name] = layout_of(key[1], value)
    state = join_positions(state, backbone_prefix + position_name, batch_axis)
    for head_prefix in set(heads.values()):
      state = _fixed(state, head_prefix)
    return state, skipped
  return to_state_dict


def in_backbone(key: Key) -> bool:
  return key[1][0] == "backbone"


def claims_vit(flat: Mapping[Key, object]) -> bool:
  paths = {path for _, path in flat}
  return ("backbone", "cls_token") in paths and ("backbone", "norm_pre", "scale") not in paths


def claims_clip(flat: Mapping[Key, object]) -> bool:
  return any(path[:2] == ("backbone", "norm_pre") for _, path in flat)


def ignored_timm(name: str, value: np.ndarray) -> bool:
  """BN counters, DINO's projection head where the model has none (a ReID ViT; in a DINO model
  only `head.last_layer.weight_g`, the norm jreid fixes at 1), timm's classifier, and the zero
  neck bias TransReID freezes (jreid's neck has no bias to hold it)."""
  return (name.endswith("num_batches_tracked") or name.startswith(("head.", "fc_norm."))
          or _zero_neck_bias(name, value))


def _zero_neck_bias(name: str, value: np.ndarray) -> bool:
  return name == "bottleneck.bias" and not np.any(value)


_CLIP_TEXT = ("transformer.", "token_embedding.", "positional_embedding", "ln_final.",
              "text_projection", "logit_scale", "text_model.", "input_resolution",
              "context_length", "vocab_size")


def ignored_clip(name: str, value: np.ndarray) -> bool:
  """BN counters, the text tower of a full CLIP file (OpenAI or Hugging Face names) and the zero
  neck bias of a CLIP-ReID / DCAC head."""
  return (name.endswith("num_batches_tracked") or name.startswith(_CLIP_TEXT)
          or _zero_neck_bias(name, value))


# DINO's MultiCropWrapper: `backbone.` + the head's own `head.*` names.
timm_to_state_dict = _export(timm_name, to_torch, "pos_embed", True,
                             {"timm": ("", {}), "transreid": ("base.", {"head": ""}),
                              "dino": ("backbone.", {"projector": ""})})
clip_to_state_dict = _export(clip_name, to_torch_clip, "visual.positional_embedding", False,
                             {"openai": ("", {})})
