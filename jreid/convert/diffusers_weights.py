"""Stable Diffusion's UNet and VAE weights from a diffusers-format folder, as Flax param trees.

    unet, unet_params = load_unet("~/weights/stable-diffusion-v1-5")
    vae, vae_params = load_vae("~/weights/stable-diffusion-v1-5")

The folder has the layout of the Hugging Face repository
runwayml/stable-diffusion-v1-5 (only these files are read):

    <root>/unet/config.json   <root>/unet/diffusion_pytorch_model.safetensors   (or .bin)
    <root>/vae/config.json    <root>/vae/diffusion_pytorch_model.safetensors    (or .bin)

Each model is built from its own config.json (`jreid.models.latent_diffusion`)
and its tensors are mapped onto the model's abstract parameter tree
(`jax.eval_shape`), so SD-1.5 is never initialised at random: diffusers' own
`convert_pytorch_state_dict_to_flax` runs `init_weights` for its reference
shapes (860M random numbers) and wants torch tensors, hence this small
converter. `.safetensors` is read with safetensors' numpy reader (no torch);
`.bin` needs torch (`torch.load(weights_only=True)`). A single-file
checkpoint (`v1-5-pruned.ckpt`) is refused: it has other names and both
models in one file.

Names: PyTorch's `down_blocks.0.resnets.1.conv1.weight` is Flax's
`down_blocks_0/resnets_1/conv1/kernel` (an index joins its list's name), a
weight is a `kernel` ((kh, kw, in, out) for a conv, (in, out) for a dense)
or a norm's `scale`, and the VAE's attention projections `to_q`, `to_k`,
`to_v`, `to_out.0` are Flax's `query`, `key`, `value`, `proj_attn` (files
written before diffusers 0.15 already use those names). The file must fill
the model exactly: missing, unexpected or misshapen tensors are an error.
"""
from __future__ import annotations

import json
import pathlib

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jreid.convert.load import check_tensor, read_state_dict
from jreid.errors import ConfigError, WeightsFileError
from jreid.models import latent_diffusion

COMPONENTS = {"unet": ("UNet2DConditionModel", latent_diffusion.build_unet),
              "vae": ("AutoencoderKL", latent_diffusion.build_vae)}
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
LAYOUT = ("<root>/unet/{config.json, diffusion_pytorch_model.safetensors or .bin} and the same in "
          "<root>/vae/, the layout of the Hugging Face repository runwayml/stable-diffusion-v1-5")
SINGLE_FILE_SUFFIXES = (".ckpt", ".safetensors", ".pt", ".pth", ".bin")
# PyTorch's attention names -> the Flax VAE's (its FlaxAttentionBlock kept the pre-0.15 names).
VAE_ATTENTION = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out_0": "proj_attn"}


def load_unet(root, *, dtype=jnp.float32):
  """(FlaxUNet2DConditionModel, params) of `<root>/unet/`; `dtype` is the computation dtype."""
  return load_component(root, "unet", dtype=dtype)


def load_vae(root, *, dtype=jnp.float32):
  """(FlaxAutoencoderKL, params) of `<root>/vae/`."""
  return load_component(root, "vae", dtype=dtype)


def load_component(root, component: str, *, dtype=jnp.float32):
  """The model of `<root>/<component>/config.json` and its params (float32 numpy arrays, host memory:
  the caller places them on devices, sharded or not)."""
  folder = component_folder(root, component)
  config_path = folder / "config.json"
  config = read_config(config_path, COMPONENTS[component][0])
  try:
    model = COMPONENTS[component][1](config, dtype=dtype)
  except ConfigError as err:
    raise WeightsFileError(f"{config_path}: {err}") from None
  weights = weights_file(folder)
  params = to_flax(read_state_dict(weights), latent_diffusion.param_shapes(model),
                   source=f"{weights} (for {config_path})")
  return model, params


def component_folder(root, component: str) -> pathlib.Path:
  root = pathlib.Path(root).expanduser()
  if root.is_file():
    raise WeightsFileError(
        f"{root} is a file; give a diffusers-format folder instead ({LAYOUT}): a single-file "
        "checkpoint such as v1-5-pruned.ckpt is not read (convert it with diffusers' "
        "convert_original_stable_diffusion_to_diffusers.py, or take the repository's unet/ and vae/)")
  if not root.is_dir():
    raise WeightsFileError(f"no Stable Diffusion folder at {root}: expected {LAYOUT} "
                           "(jreid downloads nothing)")
  folder = root / component
  if not folder.is_dir():
    singles = sorted(p.name for p in root.iterdir() if p.suffix in SINGLE_FILE_SUFFIXES)
    hint = (f"; {root} looks like a model folder itself: give its parent"
            if (root / "config.json").is_file() else
            f"; {root} holds {', '.join(singles[:3])}, but a single-file checkpoint is not read: a "
            "diffusers-format folder is needed" if singles else "")
    raise WeightsFileError(f"{root} has no {component}/ folder: expected {LAYOUT}{hint}")
  return folder


def read_config(path: pathlib.Path, class_name: str) -> dict:
  if not path.is_file():
    raise WeightsFileError(f"no {path}: the {path.parent.name}/ folder needs the config.json that "
                           f"diffusers' save_pretrained writes beside the weights ({LAYOUT})")
  try:
    config = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
    raise WeightsFileError(f"cannot read {path} as JSON: {err}") from None
  if not isinstance(config, dict):
    raise WeightsFileError(f"{path} holds a JSON {type(config).__name__}, not a diffusers config object")
  found = config.get("_class_name", class_name)
  if found != class_name:
    raise WeightsFileError(f"{path} describes a {found}, but the {path.parent.name}/ folder must hold "
                           f"a {class_name} ({LAYOUT})")
  return config


def weights_file(folder: pathlib.Path) -> pathlib.Path:
  """The folder's weights: safetensors first (no torch, no pickle), else the .bin."""
  for name in WEIGHT_FILES:
    if (folder / name).is_file():
      return folder / name
  raise WeightsFileError(f"no weights in {folder}: put {WEIGHT_FILES[0]} (or {WEIGHT_FILES[1]}) "
                         f"there ({LAYOUT})")


def flax_path(torch_name: str) -> tuple[str, ...]:
  """`up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0.weight` ->
  (`up_blocks_1`, `attentions_0`, `transformer_blocks_0`, `attn1`, `to_out_0`, `weight`):
  the leaf's name is left to `to_flax`, which knows whether the model calls it kernel or scale."""
  parts = []
  for part in torch_name.split("."):
    if part.isdigit() and parts:
      parts[-1] = f"{parts[-1]}_{part}"
    else:
      parts.append(part)
  return tuple(parts)


def _flax_key(torch_name: str, targets) -> tuple[str, ...]:
  *module, leaf = flax_path(torch_name)
  if module and module[-1] in VAE_ATTENTION and (*module[:-1], VAE_ATTENTION[module[-1]], "bias") in targets:
    module[-1] = VAE_ATTENTION[module[-1]]
  if leaf == "weight":
    kernel = (*module, "kernel")
    return kernel if kernel in targets else (*module, "scale")
  return (*module, leaf)


def _flax_layout(value: np.ndarray, key: tuple[str, ...]) -> np.ndarray:
  if key[-1] == "kernel" and value.ndim == 4:
    return value.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
  if key[-1] == "kernel" and value.ndim == 2:
    return value.T  # (out, in) -> (in, out)
  return value


def _torch_shape(shape: tuple, key: tuple[str, ...]) -> tuple:
  if key[-1] == "kernel" and len(shape) == 4:
    return (shape[3], shape[2], shape[0], shape[1])
  if key[-1] == "kernel" and len(shape) == 2:
    return shape[::-1]
  return tuple(shape)


def _few(items, limit: int = 3) -> str:
  return ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")


def to_flax(state_dict: dict[str, np.ndarray], shapes, *, source: str) -> dict:
  """The Flax params of a diffusers PyTorch state dict, checked against the abstract tree `shapes`.

  Arrays are cast to the model's dtype (float32; an fp16 file is widened)
  and popped from `state_dict` as they are converted, so SD-1.5's UNet is
  held about once, not twice.
  """
  targets = traverse_util.flatten_dict(shapes)
  params, unexpected, mismatched, misshapen = {}, [], [], set()
  for name in sorted(state_dict):
    value = np.asarray(state_dict.pop(name))
    key = _flax_key(name, targets)
    if key not in targets or key in params:  # unknown, or a second name for a filled parameter
      unexpected.append(name)
      continue
    wanted = tuple(targets[key].shape)
    array = _flax_layout(value, key)
    if array.shape != wanted:
      mismatched.append(f"{name} {tuple(value.shape)} vs model {_torch_shape(wanted, key)}")
      misshapen.add(key)
      continue
    check_tensor(source, name, value, ("params", key), targets[key])
    params[key] = np.ascontiguousarray(array, dtype=targets[key].dtype)
  missing = sorted("/".join(key) for key in targets if key not in params and key not in misshapen)
  if missing or unexpected or mismatched:
    parts = [f"{len(missing)} model parameters have no tensor in the file (e.g. {_few(missing)})"
             if missing else "",
             f"{len(unexpected)} tensors have no place in the model (e.g. {_few(unexpected)})"
             if unexpected else "",
             f"{len(mismatched)} shapes differ (e.g. {_few(mismatched)})" if mismatched else ""]
    raise WeightsFileError(f"{source} does not fit the model its config.json describes: "
                           + "; ".join(p for p in parts if p)
                           + " (a partial file, or the weights of another model?)")
  return traverse_util.unflatten_dict(params)
