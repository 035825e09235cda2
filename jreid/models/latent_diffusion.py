"""Stable Diffusion's UNet and VAE (DCAC's diffusion branch) as diffusers' Flax modules with explicit params.

    unet = build_unet(unet_config("sd15"))
    params = init_params(unet, jax.random.key(0))      # or jreid.convert.diffusers_weights.load_unet
    eps = predict_noise(unet, params, latents, timesteps, context)

The modules are diffusers 0.39's `FlaxUNet2DConditionModel` and
`FlaxAutoencoderKL` (the last release with Flax classes), used as plain linen
modules: parameters are a pytree passed to every call, never held by the
model. diffusers is imported here lazily, so jreid imports without it.

Layouts. Images are NHWC in [-1, 1], as everywhere in jreid. Latents are
NCHW ([B, 4, H/8, W/8]), because that is what the UNet takes and returns
(it transposes to NHWC inside) and what PyTorch code and papers write;
`posterior` and `decode` convert at the VAE's side (its encode returns NHWC
moments, its decode returns NCHW images). Flax kernels are (in, out):
`conv_in/kernel` is (3, 3, 4, 320), a dense `.../attn2/to_k/kernel` (768, 320).

Parameter paths are the PyTorch names with each index joined to its list's
name: `down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k.weight` is
`down_blocks_0/attentions_1/transformer_blocks_0/attn2/to_k/kernel`,
`...attn1.to_out.0` is `.../attn1/to_out_0`, the GEGLU input projection
`.../ff/net_0/proj`. The VAE's mid-block attention is `query`, `key`,
`value`, `proj_attn`.

diffusers logs "Flax classes are deprecated ..." from every Flax module's
setup, i.e. on every init, trace and apply; `_silence_flax_deprecation`
drops exactly that line from the loggers of the modules that emit it (a
logging filter on each; their other records still pass).
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from jreid.errors import ConfigError

SCALING_FACTOR = 0.18215  # SD-1.x latents are posterior samples times this (the VAE config's scaling_factor)

SD15_UNET = {  # runwayml/stable-diffusion-v1-5 unet/config.json, the keys the Flax UNet takes
    "sample_size": 64, "in_channels": 4, "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                         "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280), "layers_per_block": 2,
    "attention_head_dim": 8,  # diffusers reads it as the number of heads (its historic misnomer)
    "cross_attention_dim": 768, "flip_sin_to_cos": True, "freq_shift": 0,
}
SD15_VAE = {  # vae/config.json of the same repository
    "sample_size": 512, "in_channels": 3, "out_channels": 3, "latent_channels": 4,
    "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "act_fn": "silu",
    "norm_num_groups": 32, "scaling_factor": SCALING_FACTOR,
}
# CPU-sized: the same block types, GroupNorm(32) so channels are multiples of 32.
TINY_UNET = {**SD15_UNET, "sample_size": 8, "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
             "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"), "block_out_channels": (32, 64),
             "layers_per_block": 1, "attention_head_dim": 2, "cross_attention_dim": 32}
TINY_VAE = {**SD15_VAE, "sample_size": 32, "block_out_channels": (32, 32, 64, 64),
            "layers_per_block": 1}  # four blocks: latents are 1/8 of the image, as SD's
# SynthPerson's stand-in for SD (configs/ldm_synth.py): 32x32 images -> 4x8x8 latents (SD: factor 8,
# 128x128 -> 16x16 in DCAC), a UNet of 32 / 64 channels with a 64-wide cross-attention.
SYNTH_UNET = {**TINY_UNET, "attention_head_dim": 4, "cross_attention_dim": 64}
SYNTH_VAE = {**TINY_VAE, "down_block_types": ("DownEncoderBlock2D",) * 3,
             "up_block_types": ("UpDecoderBlock2D",) * 3, "block_out_channels": (32, 64, 64)}
UNET_PRESETS = {"sd15": SD15_UNET, "tiny": TINY_UNET, "synth": SYNTH_UNET}
VAE_PRESETS = {"sd15": SD15_VAE, "tiny": TINY_VAE, "synth": SYNTH_VAE}

# Keys of PyTorch's UNet2DConditionModel / AutoencoderKL configs that the Flax classes do not take:
# each with the one value the Flax implementation has built in. A config.json with another value
# describes a network the Flax class cannot build, so it is refused instead of silently ignored.
TORCH_ONLY_UNET = {
    "center_input_sample": False, "downsample_padding": 1, "mid_block_scale_factor": 1,
    "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-5,
    "reverse_transformer_layers_per_block": None, "encoder_hid_dim": None,
    "encoder_hid_dim_type": None, "dual_cross_attention": False, "class_embed_type": None,
    "num_class_embeds": None, "resnet_time_scale_shift": "default", "resnet_skip_time_act": False,
    "resnet_out_scale_factor": 1.0, "time_embedding_type": "positional", "time_embedding_dim": None,
    "time_embedding_act_fn": None, "timestep_post_act": None, "time_cond_proj_dim": None,
    "conv_in_kernel": 3, "conv_out_kernel": 3, "attention_type": "default",
    "class_embeddings_concat": False, "mid_block_only_cross_attention": None,
    "cross_attention_norm": None,
}
TORCH_ONLY_VAE = {"use_quant_conv": True, "use_post_quant_conv": True, "mid_block_add_attention": True}
# Keys that change no float32 output: half-precision hints and constants only pipelines read.
IGNORED_KEYS = {"upcast_attention", "force_upcast", "shift_factor", "latents_mean", "latents_std"}

# The diffusers modules whose classes log the deprecation line (grep of diffusers 0.39's sources).
FLAX_LOGGERS = ("diffusers.models.modeling_flax_utils", "diffusers.models.embeddings_flax",
                "diffusers.models.resnet_flax", "diffusers.models.attention_flax",
                "diffusers.models.vae_flax", "diffusers.models.unets.unet_2d_blocks_flax",
                "diffusers.models.unets.unet_2d_condition_flax")
DEPRECATION_PREFIX = "Flax classes are deprecated"


class _DropFlaxDeprecation(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(DEPRECATION_PREFIX)


_DEPRECATION_FILTER = _DropFlaxDeprecation()


def _silence_flax_deprecation() -> None:
  """Filters the deprecation line on each emitting logger, so every other record of those loggers
  still gets through. Run when this module is imported: `embeddings_flax` logs the line at its own
  import too, which may come first (any `import diffusers` with jax installed runs it)."""
  for name in FLAX_LOGGERS:
    logger = logging.getLogger(name)  # the same object diffusers' get_logger(__name__) returns
    if _DEPRECATION_FILTER not in logger.filters:
      logger.addFilter(_DEPRECATION_FILTER)


_silence_flax_deprecation()


def _flax_classes():
  try:
    from diffusers.models.unets.unet_2d_condition_flax import FlaxUNet2DConditionModel
    from diffusers.models.vae_flax import FlaxAutoencoderKL
  except ImportError as err:
    raise ConfigError(f"the diffusion models need diffusers 0.39 with Flax: pip install "
                      f"'jreid[diffusion]' ({err})") from None
  return FlaxUNet2DConditionModel, FlaxAutoencoderKL


def _preset(presets: Mapping, preset: str, kind: str) -> dict:
  if preset not in presets:
    raise ConfigError(f"unknown {kind} preset {preset!r}; known: {sorted(presets)}")
  return dict(presets[preset])


def unet_config(preset: str) -> dict:
  """A diffusers UNet2DConditionModel config ("sd15" or "tiny"); PyTorch's class accepts it as well."""
  return _preset(UNET_PRESETS, preset, "UNet")


def vae_config(preset: str) -> dict:
  """A diffusers AutoencoderKL config ("sd15" or "tiny"); PyTorch's class accepts it as well."""
  return _preset(VAE_PRESETS, preset, "VAE")


def _module_kwargs(cls, config: Mapping, torch_only: Mapping, kind: str) -> dict:
  """The config's values for `cls`'s fields (lists as tuples); refuses what `cls` cannot build."""
  fields = set(cls.__dataclass_fields__) - {"parent", "name", "dtype"}
  kwargs = {}
  for key, value in config.items():
    if key.startswith("_") or key in IGNORED_KEYS:  # _class_name, _diffusers_version, ...
      continue
    if key in fields:
      kwargs[key] = tuple(value) if isinstance(value, list) else value
    elif key not in torch_only:
      raise ConfigError(f"{kind} config key {key!r} is unknown to diffusers 0.39's {cls.__name__}")
    elif value != torch_only[key]:
      raise ConfigError(f"{kind} config sets {key}={value!r}, but diffusers' {cls.__name__} only "
                        f"implements {key}={torch_only[key]!r}")
  return kwargs


def build_unet(config: Mapping, *, dtype=jnp.float32):
  """The Flax UNet of a diffusers config (a preset or a folder's unet/config.json).

  `dtype` is the computation dtype (bfloat16 for mixed precision); the
  parameters stay float32.
  """
  unet_cls, _ = _flax_classes()
  return unet_cls(**_module_kwargs(unet_cls, config, TORCH_ONLY_UNET, "UNet"), dtype=dtype)


def build_vae(config: Mapping, *, dtype=jnp.float32):
  """The Flax VAE of a diffusers config (a preset or a folder's vae/config.json)."""
  _, vae_cls = _flax_classes()
  return vae_cls(**_module_kwargs(vae_cls, config, TORCH_ONLY_VAE, "VAE"), dtype=dtype)


def init_params(model, rng: jax.Array) -> dict:
  """Random parameters of a UNet or VAE (diffusers' own init, on `sample_size` inputs)."""
  return model.init_weights(rng)


def param_shapes(model) -> dict:
  """The parameter tree as jax.ShapeDtypeStructs: free even for SD-1.5 (nothing is computed)."""
  return jax.eval_shape(lambda: init_params(model, jax.random.key(0)))


def count_params(tree) -> int:
  return sum(int(leaf.size) for leaf in jax.tree.leaves(tree))


def posterior(vae, vae_params, images: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The VAE posterior's (mean, logvar) of NHWC images in [-1, 1], each NCHW [B, C_lat, H/f, W/f].

  logvar is clipped to [-30, 20] as diffusers does. A latent sample is
  mean + exp(logvar / 2) * noise; multiply it by the config's
  scaling_factor before the UNet.
  """
  dist = vae.apply({"params": vae_params}, jnp.transpose(images, (0, 3, 1, 2)),
                   method=vae.encode).latent_dist
  return jnp.transpose(dist.mean, (0, 3, 1, 2)), jnp.transpose(dist.logvar, (0, 3, 1, 2))


def decode(vae, vae_params, latents: jax.Array) -> jax.Array:
  """NHWC images (about [-1, 1]) of NCHW latents in the VAE's own scale (divided by scaling_factor).

  The latents go in NHWC: diffusers' decode guesses the layout from the last
  axis, which an NCHW latent of width 4 would fool.
  """
  images = vae.apply({"params": vae_params}, jnp.transpose(latents, (0, 2, 3, 1)),
                     method=vae.decode).sample
  return jnp.transpose(images, (0, 2, 3, 1))


def predict_noise(unet, unet_params, latents: jax.Array, timesteps: jax.Array, context: jax.Array,
                  *, remat: bool = False) -> jax.Array:
  """The UNet's epsilon for NCHW latents [B, 4, h, w] at integer timesteps [B] (or one for all),
  given the cross-attention context [B, tokens, cross_attention_dim]; NCHW like the latents.

  Computed as PyTorch's UNet2DConditionModel (and the CompVis code SD was
  trained with) does, not as diffusers' Flax UNet would: `_as_in_pytorch`.
  remat=True recomputes each ResNet and transformer block in the backward
  pass instead of storing its activations (what PyTorch diffusers' UNet
  gradient checkpointing does; the Flax UNet of 0.39 has no such option, so
  `_checkpoint_blocks` wraps those blocks with flax's nn.checkpoint). The
  values and gradients are unchanged.
  """
  import flax.linen as nn
  timesteps = jnp.broadcast_to(jnp.asarray(timesteps), latents.shape[:1])
  with contextlib.ExitStack() as interceptors:
    interceptors.enter_context(nn.intercept_methods(_as_in_pytorch))
    if remat:
      interceptors.enter_context(nn.intercept_methods(_checkpoint_blocks))
    return unet.apply({"params": unet_params}, latents, timesteps, context).sample


TRANSFORMER_NORM_EPS = 1e-6  # PyTorch's Transformer2DModel norm; diffusers' Flax one has 1e-5


def _as_in_pytorch(next_fun, args, kwargs, context):
  """flax method interceptor: the two places where diffusers' Flax UNet computes otherwise than
  PyTorch's. Its GEGLU uses tanh-approximated GELU, PyTorch's the exact (erf) one; the GroupNorm
  in front of each transformer has epsilon 1e-5 instead of 1e-6. SD's weights were trained with
  the PyTorch forms; on the tiny test UNet they move the output by 7e-5, ten times the rest of
  the float32 difference to PyTorch."""
  from diffusers.models.attention_flax import FlaxGEGLU, FlaxTransformer2DModel
  module = context.module
  if context.method_name != "__call__":
    return next_fun(*args, **kwargs)
  if isinstance(module, FlaxGEGLU):
    hidden, gate = jnp.split(module.proj(args[0]), 2, axis=-1)
    deterministic = kwargs.get("deterministic", args[1] if len(args) > 1 else True)
    return module.dropout_layer(hidden * jax.nn.gelu(gate, approximate=False),
                                deterministic=deterministic)
  if type(module).__name__ == "GroupNorm" and isinstance(module.parent, FlaxTransformer2DModel):
    return _group_norm(args[0], module.variables["params"], module.num_groups, TRANSFORMER_NORM_EPS)
  return next_fun(*args, **kwargs)


def _group_norm(x: jax.Array, params, groups: int, epsilon: float) -> jax.Array:
  """GroupNorm of NHWC `x` over (H, W, channels of a group), in float32 as flax's (dtype None)."""
  grouped = x.astype(jnp.float32).reshape(*x.shape[:-1], groups, x.shape[-1] // groups)
  axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)
  mean = grouped.mean(axis=axes, keepdims=True)
  var = grouped.var(axis=axes, keepdims=True)
  normed = ((grouped - mean) * jax.lax.rsqrt(var + epsilon)).reshape(x.shape)
  return normed * params["scale"] + params["bias"]


_INSIDE_CHECKPOINT = contextvars.ContextVar("inside_unet_block_checkpoint", default=False)


def _checkpoint_blocks(next_fun, args, kwargs, context):
  """flax method interceptor: a UNet ResNet or transformer block's __call__ runs under nn.checkpoint.

  The keyword arguments (diffusers passes only `deterministic`, a Python
  bool) stay static; the flag keeps the checkpointed call's own re-entry
  through this interceptor from wrapping it again.
  """
  import flax.linen as nn
  from diffusers.models.attention_flax import FlaxTransformer2DModel
  from diffusers.models.resnet_flax import FlaxResnetBlock2D
  if (context.method_name != "__call__" or _INSIDE_CHECKPOINT.get()
      or not isinstance(context.module, (FlaxResnetBlock2D, FlaxTransformer2DModel))):
    return next_fun(*args, **kwargs)

  def block(module, *arrays):
    token = _INSIDE_CHECKPOINT.set(True)
    try:
      return module(*arrays, **kwargs)
    finally:
      _INSIDE_CHECKPOINT.reset(token)

  return nn.checkpoint(block)(context.module, *args)
