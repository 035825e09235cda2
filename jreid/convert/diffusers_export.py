"""Write a Flax UNet or VAE of diffusers as a diffusers-format folder PyTorch diffusers loads.

    write_unet("runs/dcac/export", unet_config, unet_params)  # -> runs/dcac/export/unet/
    write_vae("runs/dcac/export", vae_config, vae_params)     # -> runs/dcac/export/vae/

Each part is `<root>/<part>/config.json` (the diffusers config, `_class_name`
and `_diffusers_version` added) and `diffusion_pytorch_model.safetensors`,
which `UNet2DConditionModel.from_pretrained(root / "unet")` (and
`AutoencoderKL`) load strictly: every name of the torch model, nothing else.
The file is written with safetensors' numpy API, so exporting needs no torch.

The params are those of diffusers' `FlaxUNet2DConditionModel` /
`FlaxAutoencoderKL` built from the same config; they are checked against
that model's shapes (`jax.eval_shape` of its `init_weights`: no weights
made, ~8 s for SD-1.5 on CPU) before anything is written, so a tree of
another config is refused naming the paths that differ, instead of making a
folder torch cannot load.

The names differ from torch's in three ways, each undone here:
  - Flax names the modules of a list attribute `<attr>_<i>` where torch's
    `nn.ModuleList` gives `<attr>.<i>` (`down_blocks_0` -> `down_blocks.0`,
    `to_out_0` -> `to_out.0`, `ff/net_0/proj` -> `ff.net.0.proj`). Only the
    list attributes in `MODULE_LISTS` are split: `time_embedding.linear_1`
    is an attribute named `linear_1` in torch too and keeps its underscore.
  - leaves: a Dense `kernel` (in, out) is torch's Linear `weight` (out, in),
    a Conv `kernel` (kh, kw, in, out) is Conv2d's (out, in, kh, kw), a norm's
    `scale` is its `weight`.
  - the VAE's mid-block attention keeps the names of diffusers' old
    AttentionBlock in Flax (`query`, `key`, `value`, `proj_attn`); torch
    diffusers 0.39 builds it from `Attention` (`to_q`, `to_k`, `to_v`,
    `to_out.0`), and a file with the old names only loads through its
    deprecated-name shim, so the new names are written.

A part is written to a temporary folder beside the target and renamed into
place, so an interrupted export leaves either the earlier export or none,
never a half folder.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import secrets
import shutil
from collections.abc import Mapping

import numpy as np

from jreid.core import paths
from jreid.errors import CheckpointMismatchError, ConfigError, OutputPathError

DIFFUSERS_VERSION = "0.39.0"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
CONFIG_FILE = "config.json"

# The torch attributes that are nn.ModuleLists (or nn.Sequential) in UNet2DConditionModel and
# AutoencoderKL: their Flax counterparts are named `<attr>_<i>`.
MODULE_LISTS = frozenset({"down_blocks", "up_blocks", "attentions", "resnets", "transformer_blocks",
                          "downsamplers", "upsamplers", "to_out", "net"})
# Settings of the Flax module, not of the model: torch's config has no such keys.
FLAX_ONLY_KEYS = frozenset({"dtype", "parent", "name", "use_memory_efficient_attention", "split_head_dim"})


@dataclasses.dataclass(frozen=True)
class Part:
  folder: str
  torch_class: str
  flax_class: str
  renames: Mapping[str, str]  # a Flax module name -> its torch name, where they differ beyond lists


PARTS = {
    "unet": Part("unet", "UNet2DConditionModel", "FlaxUNet2DConditionModel", {}),
    "vae": Part("vae", "AutoencoderKL", "FlaxAutoencoderKL",
                {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}),
}


def _flatten(tree, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
  """A nested mapping (dict or FrozenDict) as {path tuple: leaf}."""
  flat = {}
  for key, value in tree.items():
    path = prefix + (str(key),)
    flat.update(_flatten(value, path) if isinstance(value, Mapping) else {path: value})
  return flat


def _module_name(segment: str, part: Part) -> str:
  if segment in part.renames:
    return part.renames[segment]
  attr, _, index = segment.rpartition("_")
  return f"{attr}.{index}" if attr in MODULE_LISTS and index.isdigit() else segment


def torch_name(part: str, path: tuple[str, ...]) -> str:
  """The torch state-dict name of the Flax param at `path` (leaf last)."""
  spec = PARTS[part]
  *modules, leaf = path
  leaf = {"kernel": "weight", "scale": "weight"}.get(leaf, leaf)
  return ".".join([_module_name(m, spec) for m in modules] + [leaf])


def torch_layout(path: tuple[str, ...], value) -> np.ndarray:
  """The value as torch holds it: kernels transposed; float16 kept, anything else float32
  (safetensors' numpy API has no bfloat16, and float32 holds it exactly)."""
  array = np.asarray(value)
  if array.dtype != np.float16:
    array = array.astype(np.float32, copy=False)
  if path[-1] == "kernel":
    array = array.T if array.ndim == 2 else np.transpose(array, (3, 2, 0, 1))
  return np.ascontiguousarray(array)


def torch_state(part: str, params) -> dict[str, np.ndarray]:
  """The Flax param tree of `part` ("unet" / "vae") as a torch state dict of numpy arrays."""
  return {torch_name(part, path): torch_layout(path, value) for path, value in _flatten(params).items()}


def _flax_module(part: Part, config: Mapping):
  """diffusers' Flax model of `config`: its fields taken from the config, lists as tuples."""
  import diffusers
  cls = getattr(diffusers, part.flax_class)
  fields = {field.name for field in dataclasses.fields(cls)} - FLAX_ONLY_KEYS
  return cls(**{key: tuple(value) if isinstance(value, list) else value
                for key, value in config.items() if key in fields})


def _listed(paths_: list[str], limit: int = 3) -> str:
  more = f" (+{len(paths_) - limit} more)" if len(paths_) > limit else ""
  return ", ".join(paths_[:limit]) + more


def check_params(part: str, config: Mapping, params) -> None:
  """`params` has exactly the names and shapes of the Flax model `config` builds."""
  import jax
  try:
    model = _flax_module(PARTS[part], config)
    shapes = jax.eval_shape(model.init_weights, jax.random.PRNGKey(0))
  except (ValueError, TypeError) as err:  # diffusers' own word on a bad block type or width
    raise ConfigError(f"the {part} config does not build a {PARTS[part].flax_class}: "
                      f"{str(err).splitlines()[0]}") from None
  expected = {"/".join(p): tuple(v.shape) for p, v in _flatten(shapes).items()}
  got = {"/".join(p): tuple(np.shape(v)) for p, v in _flatten(params).items()}
  missing = sorted(set(expected) - set(got))
  unexpected = sorted(set(got) - set(expected))
  shapes = [f"{p} {got[p]} (expected {expected[p]})" for p in sorted(set(got) & set(expected))
            if got[p] != expected[p]]
  problems = ([f"missing {_listed(missing)}"] if missing else []) + \
             ([f"unexpected {_listed(unexpected)}"] if unexpected else []) + \
             ([f"shape of {_listed(shapes)}"] if shapes else [])
  if problems:
    raise CheckpointMismatchError(f"the {part} params do not match its config "
                                  f"({PARTS[part].flax_class}): {'; '.join(problems)}")


def config_json(part: str, config: Mapping) -> str:
  """config.json as diffusers writes it: its class and version first, no Flax-only or private keys."""
  kept = {key: value for key, value in sorted(config.items())
          if key not in FLAX_ONLY_KEYS and not key.startswith("_")}
  content = {"_class_name": PARTS[part].torch_class, "_diffusers_version": DIFFUSERS_VERSION, **kept}
  try:
    return json.dumps(content, indent=2) + "\n"
  except TypeError as err:
    raise ConfigError(f"the {part} config cannot be written as JSON ({err}); give plain numbers, "
                      "strings, lists and None") from None


def _replaceable(target: pathlib.Path) -> None:
  """An earlier export (or an empty folder) may be replaced; anything else is refused."""
  if not target.exists():
    return
  if not target.is_dir():
    raise OutputPathError(f"the export folder {target} is a file; remove it or pick another root")
  if any(target.iterdir()) and not (target / CONFIG_FILE).is_file():
    raise OutputPathError(f"the export folder {target} holds files but no {CONFIG_FILE}, so it is "
                          "not an earlier export; remove it or pick another root")


def _publish(staging: pathlib.Path, target: pathlib.Path) -> None:
  """Renames `staging` to `target`; an earlier `target` is set aside first and restored on failure."""
  if not target.exists():
    os.rename(staging, target)
    return
  aside = target.with_name(f".{target.name}.{secrets.token_hex(6)}.old")
  os.rename(target, aside)
  try:
    os.rename(staging, target)
  except BaseException:
    os.rename(aside, target)
    raise
  shutil.rmtree(aside, ignore_errors=True)


def write(root: str | pathlib.Path, part: str, config: Mapping, params) -> pathlib.Path:
  """Writes `<root>/<part>/` (part "unet" or "vae") and returns that folder."""
  if part not in PARTS:
    raise ConfigError(f"unknown diffusers part {part!r}; expected one of {sorted(PARTS)}")
  root = paths.check_output_folder(root, "the diffusers export root")
  target = root / PARTS[part].folder
  _replaceable(target)
  check_params(part, config, params)
  config_text = config_json(part, config)
  state = torch_state(part, params)
  from safetensors.numpy import save_file
  staging = root / f".{target.name}.{secrets.token_hex(6)}.tmp"
  try:
    staging.mkdir(parents=True)
    (staging / CONFIG_FILE).write_text(config_text)
    save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
    _publish(staging, target)
  except OSError as err:  # named by the target: the temporary folder is gone by the time it is read
    raise OutputPathError(f"cannot write the diffusers export {target}: {paths.describe(err)}; "
                          "an earlier export there is intact") from None
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return target


def write_unet(root: str | pathlib.Path, config: Mapping, params) -> pathlib.Path:
  """`<root>/unet/` of a FlaxUNet2DConditionModel's params."""
  return write(root, "unet", config, params)


def write_vae(root: str | pathlib.Path, config: Mapping, params) -> pathlib.Path:
  """`<root>/vae/` of a FlaxAutoencoderKL's params."""
  return write(root, "vae", config, params)
