"""Vision transformers: the timm/DINO ViT (TransReID-SSL, optionally with its IBN conv stem) and
OpenAI CLIP's image tower (DCAC), one module with the few switches that tell them apart.

Contract: `(x, *, train) -> (feature, intermediates)` like every backbone, but
`feature` is one vector per image (the CLS token after the final norm; for
CLIP `ln_post(CLS) @ proj`), so the ReID model pools it with `identity`;
`intermediates["patch_tokens"]` is the normalised patch tokens as a (B, h, w, D)
map (DSR's local features, visualisation).

Blocks are pre-norm (x + attn(norm1(x)), x + mlp(norm2(x))), attention goes
through `jax.nn.dot_product_attention` (cuDNN's fused kernel on GPUs with
bfloat16), drop path is per-sample stochastic depth with rates linear over
depth (DeiT/timm), dropout follows the position embedding, the attention
projection and each MLP layer (timm's `drop_rate`).

What differs between the two published families:

  | | timm / DINO / TransReID-SSL | OpenAI CLIP |
  | --- | --- | --- |
  | LayerNorm eps | 1e-6 | 1e-5 |
  | MLP activation | GELU (erf) | QuickGELU x*sigmoid(1.702x) |
  | norm before the blocks | - | `ln_pre` (`norm_pre` here) |
  | patch conv bias | yes | no |
  | output | norm(CLS) | ln_post(CLS) @ proj (768 -> 512) |

The position embedding keeps its grid shape, `pos_embed` (h, w, D) plus
`cls_pos_embed` (D,) for the CLS token: a checkpoint trained on another token
grid (CLIP's 14x14 at 224, 16x8 at 256x128) is resized at load time by its
shape (`jreid.convert.vit_names`), never by guessing a grid from a token count.
An input of another size than the init image (DINO's 128x64 local crops) uses
the grid interpolated as DINO does (`interpolate_positions`).

Params: `patch_embed/proj/{kernel,bias}` (ICS: `patch_embed/conv{1,2,3}`,
`patch_embed/norm{1,2,3}`, with the IBN halves `IN`/`BN`), `cls_token` (D,),
`pos_embed`, `cls_pos_embed`, [`norm_pre`], `blocks_{i}/{norm1, attn/qkv,
attn/proj, norm2, mlp/fc1, mlp/fc2}`, `norm`, [`proj` (D, proj_dim)].
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jreid.core.resize import grid_matrices
from jreid.errors import ConfigError
from jreid.models.layers import IBN, Conv, batch_norm


def gelu(x: jax.Array) -> jax.Array:
  """Exact GELU as torch writes it, x/2 (1 + erf(x/sqrt 2)): XLA:CPU's erf is one polynomial,
  its erfc (jax.nn.gelu's form) a two-branch select, which costs a ViT-S step ~5%."""
  return 0.5 * x * (1.0 + jax.lax.erf(x * 0.7071067811865476))


ACTIVATIONS = {
    "gelu": gelu,
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),  # CLIP's approximation
}
STEMS = ("patch", "ics")
_INIT = nn.initializers.truncated_normal(stddev=0.02)  # timm's init of tokens and linears


def token_grid(size: tuple[int, int], patch_size: int, stride: int) -> tuple[int, int]:
  """(h, w) tokens of a VALID `patch_size` conv with `stride` over an image (or stem map) of `size`."""
  h, w = ((s - patch_size) // stride + 1 for s in size)
  if h < 1 or w < 1:
    raise ConfigError(f"a {size[0]}x{size[1]} image gives no {patch_size}x{patch_size} patch "
                      f"(stride {stride}); use larger images or model.backbone.patch_size")
  return h, w


class PatchEmbed(nn.Module):
  """Non-overlapping patches as one matmul (a reshape), overlapping ones (stride < patch) as a conv.

  Both compute the same VALID convolution; the matmul form is much faster on
  CPU, where XLA's large-kernel convs are slow.
  """
  embed_dim: int
  patch_size: int
  stride: int
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    p, s = self.patch_size, self.stride
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (p, p, x.shape[-1], self.embed_dim))
    kernel = kernel.astype(x.dtype)
    h, w = token_grid(x.shape[1:3], p, s)
    if s == p:
      b, c = x.shape[0], x.shape[-1]
      patches = x[:, :h * p, :w * p].reshape(b, h, p, w, p, c).transpose(0, 1, 3, 2, 4, 5)
      y = patches.reshape(b, h, w, p * p * c) @ kernel.reshape(p * p * c, self.embed_dim)
    else:
      y = jax.lax.conv_general_dilated(x, kernel, (s, s), "VALID",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.embed_dim,)).astype(y.dtype)
    return y


class ICSStem(nn.Module):
  """TransReID-SSL's IBN-based convolution stem: conv7x7 s2 -> IBN -> ReLU -> conv3x3 -> IBN ->
  ReLU -> conv3x3 -> BN -> ReLU, then the patch conv (kernel patch/2, stride stride/2) to D.

  Convolutions before the patchify keep local structure a 16x16 linear
  projection loses; the IBN halves (instance norm) remove per-image style.
  """
  embed_dim: int
  patch_size: int
  stride: int
  channels: int = 64

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if self.patch_size % 2 or self.stride % 2:
      raise ConfigError(f"the ICS stem halves the image first, so model.backbone.patch_size and "
                        f"stride must be even, got {self.patch_size} and {self.stride}")
    for i, (kernel, stride) in enumerate(((7, 2), (3, 1), (3, 1)), start=1):
      x = Conv(self.channels, kernel, stride, kernel // 2, name=f"conv{i}")(x)
      norm = IBN(name=f"norm{i}") if i < 3 else batch_norm(name=f"norm{i}")
      x = nn.relu(norm(x, use_running_average=not train))
    return PatchEmbed(self.embed_dim, self.patch_size // 2, self.stride // 2, name="proj")(x)


def interpolate_positions(grid: jax.Array, size: tuple[int, int]) -> jax.Array:
  """A (H, W, D) position grid at another token grid, as DINO's `interpolate_pos_encoding` does it.

  Bicubic (torch's, A = -0.75, no antialiasing) with DINO's scale factor
  (size + 0.1) / trained size, a quirk that moves the sample points slightly
  and is kept so DINO-trained weights see the positions they were trained
  with (the local crops of multi-crop training, any other test size).
  """
  (rows, cols) = grid_matrices(grid.shape[:2], size, "bicubic",
                               tuple((n + 0.1) / old for n, old in zip(size, grid.shape[:2])))
  return jnp.einsum("ah,bw,hwd->abd", rows.astype(np.float32), cols.astype(np.float32),
                    grid.astype(jnp.float32)).astype(grid.dtype)


def drop_path_rates(rate: float, depth: int) -> list[float]:
  """Stochastic-depth rates linear from 0 (first block) to `rate` (last), as DeiT / timm."""
  return [rate * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]


class DropPath(nn.Module):
  """Stochastic depth: a residual branch is dropped for whole samples, kept ones scaled by 1/(1-rate)."""
  rate: float

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if not train or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return x * mask.astype(x.dtype) / keep


def attend(qkv: jax.Array, num_heads: int) -> jax.Array:
  """softmax(q k^T / sqrt(d)) v per head: packed (B, N, 3D) projections -> (B, N, D).

  On GPUs and TPUs through `jax.nn.dot_product_attention` (cuDNN's fused
  kernel for bfloat16 on GPUs); on CPU as batched matmuls with the heads
  first, which XLA:CPU runs faster than that function's formulation (the
  same arithmetic). q, k, v are split off the packed axis rather than indexed
  from a (3, ...) axis, so their gradients concatenate instead of padding
  three full-size copies.
  """
  b, n, _ = qkv.shape
  q, k, v = (part.reshape(b, n, num_heads, -1) for part in jnp.split(qkv, 3, axis=-1))
  if jax.default_backend() != "cpu":
    return jax.nn.dot_product_attention(q, k, v).reshape(b, n, -1)
  q, k, v = (part.transpose(0, 2, 1, 3) for part in (q, k, v))  # (B, H, N, d)
  scores = (q * q.shape[-1] ** -0.5) @ k.swapaxes(-1, -2)
  weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(v.dtype)
  return (weights @ v).transpose(0, 2, 1, 3).reshape(b, n, -1)


class Attention(nn.Module):
  """Multi-head self-attention with one packed qkv projection (timm's `qkv`, CLIP's `in_proj`)."""
  num_heads: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    b, n, d = x.shape
    if d % self.num_heads:
      raise ConfigError(f"model.backbone.embed_dim={d} is not divisible by num_heads={self.num_heads}")
    qkv = nn.Dense(3 * d, kernel_init=_INIT, name="qkv")(x)
    out = nn.Dense(d, kernel_init=_INIT, name="proj")(attend(qkv, self.num_heads))
    return nn.Dropout(self.dropout, deterministic=not train)(out)


class MLP(nn.Module):
  hidden: int
  activation: str = "gelu"
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    drop = nn.Dropout(self.dropout, deterministic=not train)
    hidden = drop(ACTIVATIONS[self.activation](nn.Dense(self.hidden, kernel_init=_INIT, name="fc1")(x)))
    return drop(nn.Dense(x.shape[-1], kernel_init=_INIT, name="fc2")(hidden))


class Block(nn.Module):
  num_heads: int
  mlp_ratio: float
  norm_eps: float
  activation: str
  drop_path: float = 0.0
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    drop_path = DropPath(self.drop_path)
    y = nn.LayerNorm(epsilon=self.norm_eps, name="norm1")(x)
    x = x + drop_path(Attention(self.num_heads, self.dropout, name="attn")(y, train=train), train=train)
    y = nn.LayerNorm(epsilon=self.norm_eps, name="norm2")(x)
    mlp = MLP(int(x.shape[-1] * self.mlp_ratio), self.activation, self.dropout, name="mlp")
    return x + drop_path(mlp(y, train=train), train=train)


class VisionTransformer(nn.Module):
  """A ViT; the backbone names in `jreid.models.backbones` fix the family's switches.

  `embed_dim`, `depth`, `num_heads` default to ViT-S/16 and can be shrunk for CPU
  presets; `stride` < `patch_size` gives TransReID's overlapping patches (12).
  """
  embed_dim: int = 384
  depth: int = 12
  num_heads: int = 6
  mlp_ratio: float = 4.0
  patch_size: int = 16
  stride: int = 16
  drop_path: float = 0.0
  dropout: float = 0.0
  proj_dim: int = 0          # CLIP's output projection (0: none)
  stem: str = "patch"        # "patch" | "ics" (TransReID-SSL's IBN conv stem)
  stem_channels: int = 64    # the ICS stem's width (64 in the paper)
  norm_eps: float = 1e-6
  activation: str = "gelu"
  norm_pre: bool = False     # CLIP's ln_pre
  patch_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    if self.stem == "ics":
      tokens = ICSStem(self.embed_dim, self.patch_size, self.stride, self.stem_channels,
                       name="patch_embed")(x, train=train)
    elif self.stem == "patch":
      tokens = _PatchStem(self.embed_dim, self.patch_size, self.stride, self.patch_bias,
                          name="patch_embed")(x)
    else:
      raise ConfigError(f"ViT stem {self.stem!r}; choose one of {STEMS}")
    b, h, w, d = tokens.shape
    trained = (self.get_variable("params", "pos_embed").shape if self.has_variable("params", "pos_embed")
               else (h, w, d))  # the grid of the init image; other inputs interpolate it
    grid = self.param("pos_embed", _INIT, trained)
    if trained[:2] != (h, w):
      grid = interpolate_positions(grid, (h, w))
    grid = grid.astype(tokens.dtype)
    cls_pos = self.param("cls_pos_embed", _INIT, (d,)).astype(tokens.dtype)
    cls = self.param("cls_token", _INIT, (d,)).astype(tokens.dtype)
    x = jnp.concatenate([jnp.broadcast_to(cls + cls_pos, (b, 1, d)),
                         (tokens + grid).reshape(b, h * w, d)], axis=1)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    if self.norm_pre:
      x = nn.LayerNorm(epsilon=self.norm_eps, name="norm_pre")(x)
    for i, rate in enumerate(drop_path_rates(self.drop_path, self.depth)):
      x = Block(self.num_heads, self.mlp_ratio, self.norm_eps, self.activation, rate, self.dropout,
                name=f"blocks_{i}")(x, train=train)
    x = nn.LayerNorm(epsilon=self.norm_eps, name="norm")(x)
    feature = x[:, 0]
    if self.proj_dim:
      feature = feature @ self.param("proj", _INIT, (d, self.proj_dim)).astype(feature.dtype)
    return feature, {"patch_tokens": x[:, 1:].reshape(b, h, w, d)}


class _PatchStem(nn.Module):
  """The plain stem: `patch_embed/proj`, as timm names it."""
  embed_dim: int
  patch_size: int
  stride: int
  use_bias: bool

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return PatchEmbed(self.embed_dim, self.patch_size, self.stride, self.use_bias, name="proj")(x)
