"""Hugging Face CLIP vision names -> OpenAI CLIP names, so one CLIP weight map reads both.

HF's `CLIPVisionModel` / `CLIPModel` safetensors name the image tower
`vision_model.*` and split attention into q/k/v projections; OpenAI's state
dict (the layout jreid's CLIP map and export use) names it `visual.*` with
nn.MultiheadAttention's packed `in_proj_weight` (rows q, then k, then v) and
stores the projection as a (width, output) matrix, where HF has a bias-free
nn.Linear of shape (output, width).
"""
from __future__ import annotations

import re

import numpy as np

from jreid.errors import WeightsFileError

VISION = "vision_model."
# Renamed one to one, HF prefix -> OpenAI prefix.
RENAMES = {
    "vision_model.embeddings.patch_embedding.": "visual.conv1.",
    "vision_model.pre_layrnorm.": "visual.ln_pre.",  # sic: HF's spelling
    "vision_model.post_layernorm.": "visual.ln_post.",
}
LAYER_RENAMES = {
    "self_attn.out_proj.": "attn.out_proj.",
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
}
_LAYER = re.compile(r"^vision_model\.encoder\.layers\.(\d+)\.(.*)$")
_QKV = re.compile(r"^self_attn\.([qkv])_proj\.(weight|bias)$")
DROPPED = ("vision_model.embeddings.position_ids",)  # an index buffer (arange), not a weight


def openai_from_hf(state: dict[str, np.ndarray], *, source: str = "the state dict"
                   ) -> dict[str, np.ndarray]:
  """`state` with HF CLIP vision names rewritten to OpenAI's; every other name passes unchanged.

  q/k/v projections are concatenated (q, k, v) into `attn.in_proj_weight` /
  `in_proj_bias`; `visual_projection.weight` (out, in) becomes `visual.proj`
  (in, out). Text-tower names are kept as they are (a vision model then
  reports them unused). Raises WeightsFileError (naming `source`, the file)
  if a layer has some but not all of q/k/v for a weight or bias, or their
  shapes differ.
  """
  out: dict[str, np.ndarray] = {}
  qkv: dict[tuple[str, str], dict[str, np.ndarray]] = {}
  for name, value in state.items():
    if name in DROPPED:
      continue
    layer = _LAYER.match(name)
    if layer:
      index, rest = layer.groups()
      split = _QKV.match(rest)
      if split:
        qkv.setdefault((index, split.group(2)), {})[split.group(1)] = value
        continue
      prefix = next((p for p in LAYER_RENAMES if rest.startswith(p)), None)
      new = (f"visual.transformer.resblocks.{index}."
             + (LAYER_RENAMES[prefix] + rest[len(prefix):] if prefix else rest))
    elif name == "vision_model.embeddings.class_embedding":
      new = "visual.class_embedding"
    elif name == "vision_model.embeddings.position_embedding.weight":
      new = "visual.positional_embedding"
    elif name == "visual_projection.weight":
      new, value = "visual.proj", np.ascontiguousarray(np.asarray(value).T)
    else:
      prefix = next((p for p in RENAMES if name.startswith(p)), None)
      new = RENAMES[prefix] + name[len(prefix):] if prefix else name
    _put(out, new, value, name, source)
  for (index, kind), parts in sorted(qkv.items(), key=lambda item: (int(item[0][0]), item[0][1])):
    where = f"vision_model.encoder.layers.{index}.self_attn"
    absent = [p for p in "qkv" if p not in parts]
    if absent:
      has = ", ".join(f"{p}_proj.{kind}" for p in sorted(parts))
      lacks = ", ".join(f"{p}_proj.{kind}" for p in absent)
      raise WeightsFileError(f"{source}: {where} has {has} but not {lacks}: a CLIP attention "
                             "layer needs all of q, k and v")
    shapes = [tuple(np.shape(parts[p])) for p in "qkv"]
    if len(set(shapes)) != 1:
      raise WeightsFileError(f"{source}: {where}: q/k/v_proj.{kind} have different shapes "
                             f"{shapes}; expected three equal ones")
    new = f"visual.transformer.resblocks.{index}.attn.in_proj_{kind}"
    packed = np.concatenate([np.asarray(parts[p]) for p in "qkv"], axis=0)
    _put(out, new, packed, f"{where}.{{q,k,v}}_proj.{kind}", source)
  return out


def _put(out: dict, new: str, value, name: str, source: str) -> None:
  if new in out:  # a file holding both layouts of the same tensor
    raise WeightsFileError(f"{source}: {name} and another tensor both become {new}; the file "
                           "mixes the Hugging Face and OpenAI CLIP layouts")
  out[new] = value
