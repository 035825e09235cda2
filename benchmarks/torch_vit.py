"""PyTorch vision transformers written from the papers' published layouts, independent of jreid's Flax code.

The reference side of jreid's ViT parity tests (weights exported from jreid
must load here with `strict=True` and give the same features) and of
`benchmarks/train_step.py` (the same ViT ReID train step in PyTorch eager).
timm and open_clip are not installed, so the networks are written out from
their descriptions (METHODS.md, "DCAC" and "TransReID-SSL"):

* `VisionTransformer`: the timm / DINO ViT that TransReID(-SSL) builds on
  (`cls_token`, `pos_embed`, `patch_embed.proj`, `blocks.N.{norm1, attn.qkv,
  attn.proj, norm2, mlp.fc1, mlp.fc2}`, `norm`; LayerNorm eps 1e-6, erf GELU),
  with TransReID's overlapping patch stride and TransReID-SSL's IBN conv stem
  ("ICS", `patch_embed.conv.{0..8}`).
* `CLIPVisual` / `CLIPImageEncoder`: OpenAI CLIP's image tower (`conv1`,
  `class_embedding`, `positional_embedding`, `ln_pre`,
  `transformer.resblocks.N.{ln_1, attn, ln_2, mlp.c_fc, mlp.c_proj}`,
  `ln_post`, `proj`; torch's MultiheadAttention, QuickGELU, LayerNorm eps 1e-5).
* `TransReID`: the ReID wrapper (BNNeck with a frozen bias, bias-free classifier).
* `randomize`: random non-trivial values everywhere, so a parity test tests
  the name and layout mapping rather than float rounding of default inits.
"""
import collections
import math

import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.torch_resnet import IBNa  # IN on the first half of the channels, BN on the rest


def _pair(value):
  return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _grid(size, kernel, stride):
  """Output length of a valid (unpadded) convolution: TransReID's (H - patch) // stride + 1."""
  return (size - kernel) // stride + 1


class DropPath(nn.Module):
  """Stochastic depth per sample: a whole sample's residual branch is dropped, survivors scaled by 1/keep."""

  def __init__(self, drop_prob=0.0):
    super().__init__()
    self.drop_prob = float(drop_prob)

  def forward(self, x):
    if not self.training or self.drop_prob == 0.0:
      return x
    keep = 1.0 - self.drop_prob
    mask = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


class Attention(nn.Module):
  """Multi-head self-attention, one packed D -> 3D projection: q, k, v in that order, heads split after."""

  def __init__(self, dim, num_heads, qkv_bias=True, attn_drop=0.0, proj_drop=0.0):
    super().__init__()
    self.num_heads = num_heads
    self.head_dim = dim // num_heads
    self.scale = self.head_dim ** -0.5
    self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
    self.attn_drop = attn_drop
    self.proj = nn.Linear(dim, dim)
    self.proj_drop = nn.Dropout(proj_drop)

  def forward(self, x):
    batch, tokens, dim = x.shape
    qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
    # The fused kernel torch offers eagerly (what timm uses when available): softmax(q k^T * scale) v.
    out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], scale=self.scale,
                                         dropout_p=self.attn_drop if self.training else 0.0)
    return self.proj_drop(self.proj(out.transpose(1, 2).reshape(batch, tokens, dim)))


class Mlp(nn.Module):
  def __init__(self, dim, hidden, drop=0.0):
    super().__init__()
    self.fc1 = nn.Linear(dim, hidden)
    self.act = nn.GELU()  # exact (erf) GELU, as timm's default
    self.fc2 = nn.Linear(hidden, dim)
    self.drop = nn.Dropout(drop)

  def forward(self, x):
    return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
  """Pre-norm block: x + drop_path(attn(norm1(x))), then x + drop_path(mlp(norm2(x)))."""

  def __init__(self, dim, num_heads, mlp_ratio, qkv_bias, drop, attn_drop, drop_path):
    super().__init__()
    self.norm1 = nn.LayerNorm(dim, eps=1e-6)
    self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
    self.drop_path = DropPath(drop_path)
    self.norm2 = nn.LayerNorm(dim, eps=1e-6)
    self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

  def forward(self, x):
    x = x + self.drop_path(self.attn(self.norm1(x)))
    return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
  """Patch projection (`proj`), optionally after TransReID-SSL's IBN conv stem (`conv`).

  Without the stem `proj` is a Conv2d of kernel `patch_size` and stride
  `stride` (stride < patch: TransReID's overlapping patches). With it, the
  stem halves the image (conv7x7 s2) and `proj` takes kernel patch_size // 2,
  stride stride // 2 on its 64-channel map, so 16 still means 16x16 pixels.
  """

  def __init__(self, img_size, patch_size, stride, in_chans, embed_dim, stem_conv, stem_channels=64):
    super().__init__()
    height, width = _pair(img_size)
    if stem_conv:
      c = stem_channels  # 64 in the paper; smaller for tiny test models
      self.conv = nn.Sequential(
          nn.Conv2d(in_chans, c, 7, 2, 3, bias=False), IBNa(c), nn.ReLU(inplace=True),
          nn.Conv2d(c, c, 3, 1, 1, bias=False), IBNa(c), nn.ReLU(inplace=True),
          nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
      in_chans, patch_size, stride = c, patch_size // 2, stride // 2
      height, width = _grid(height + 6, 7, 2), _grid(width + 6, 7, 2)
    else:
      self.conv = None
    self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride)
    self.grid = (_grid(height, patch_size, stride), _grid(width, patch_size, stride))
    self.num_patches = self.grid[0] * self.grid[1]

  def forward(self, x):
    if self.conv is not None:
      x = self.conv(x)
    return self.proj(x).flatten(2).transpose(1, 2)  # (B, h*w, D), row-major over the grid


class VisionTransformer(nn.Module):
  """timm/DINO ViT as TransReID-SSL uses it; `forward` returns the final-norm CLS token (B, D)."""

  def __init__(self, img_size=(224, 224), patch_size=16, stride=16, in_chans=3, embed_dim=384, depth=12,
               num_heads=6, mlp_ratio=4.0, qkv_bias=True, drop_rate=0.0, attn_drop_rate=0.0,
               drop_path_rate=0.0, stem_conv=False, stem_channels=64):
    super().__init__()
    self.embed_dim = self.num_features = embed_dim
    self.patch_embed = PatchEmbed(img_size, patch_size, stride, in_chans, embed_dim, stem_conv,
                                  stem_channels)
    self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
    self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.patch_embed.num_patches, embed_dim))
    self.pos_drop = nn.Dropout(drop_rate)
    rates = torch.linspace(0, drop_path_rate, depth).tolist()  # stochastic depth linear over depth
    self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate,
                                       rate) for rate in rates])
    self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
    self._init()

  def _init(self):
    """timm's scheme (truncated normal 0.02 for tokens and Linear, LayerNorm 1/0): timed runs train sanely."""
    nn.init.trunc_normal_(self.pos_embed, std=0.02)
    nn.init.trunc_normal_(self.cls_token, std=0.02)
    for module in self.modules():
      if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)

  def forward_tokens(self, x):
    """All tokens after the final LayerNorm, CLS first: (B, 1 + N, D)."""
    x = self.patch_embed(x)
    x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1)
    x = self.pos_drop(x + self.pos_embed)
    for block in self.blocks:
      x = block(x)
    return self.norm(x)

  def forward(self, x):
    return self.forward_tokens(x)[:, 0]


class QuickGELU(nn.Module):
  """CLIP's sigmoid approximation of GELU: x * sigmoid(1.702 x) (not the erf GELU)."""

  def forward(self, x):
    return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
  def __init__(self, width, heads, mlp_ratio=4.0):
    super().__init__()
    self.attn = nn.MultiheadAttention(width, heads, batch_first=True)  # in_proj packs q, k, v
    self.ln_1 = nn.LayerNorm(width)  # eps 1e-5, torch's default, as OpenAI's
    hidden = int(width * mlp_ratio)
    self.mlp = nn.Sequential(collections.OrderedDict([
        ("c_fc", nn.Linear(width, hidden)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(hidden, width))]))
    self.ln_2 = nn.LayerNorm(width)

  def forward(self, x):
    y = self.ln_1(x)
    x = x + self.attn(y, y, y, need_weights=False)[0]
    return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
  def __init__(self, width, layers, heads, mlp_ratio=4.0):
    super().__init__()
    self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, mlp_ratio) for _ in range(layers)])

  def forward(self, x):
    return self.resblocks(x)


class CLIPVisual(nn.Module):
  """OpenAI CLIP's ViT image tower; `forward` returns ln_post(CLS) @ proj: (B, output_dim)."""

  def __init__(self, input_resolution=(224, 224), patch_size=16, width=768, layers=12, heads=12,
               output_dim=512, mlp_ratio=4.0):
    super().__init__()
    height, wide = _pair(input_resolution)
    self.grid = (height // patch_size, wide // patch_size)
    self.num_features = output_dim
    self.conv1 = nn.Conv2d(3, width, patch_size, patch_size, bias=False)
    scale = width ** -0.5  # OpenAI's init
    self.class_embedding = nn.Parameter(scale * torch.randn(width))
    self.positional_embedding = nn.Parameter(scale * torch.randn(1 + self.grid[0] * self.grid[1], width))
    self.ln_pre = nn.LayerNorm(width)
    self.transformer = Transformer(width, layers, heads, mlp_ratio)
    self.ln_post = nn.LayerNorm(width)
    self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

  def forward(self, x):
    x = self.conv1(x).flatten(2).transpose(1, 2)
    x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1).to(x.dtype), x], 1)
    x = self.transformer(self.ln_pre(x + self.positional_embedding.to(x.dtype)))
    return self.ln_post(x[:, 0]) @ self.proj


class CLIPImageEncoder(nn.Module):
  """Only `visual`, so the state dict has OpenAI's `visual.`-prefixed names (no text tower: not needed)."""

  def __init__(self, **kwargs):
    super().__init__()
    self.visual = CLIPVisual(**kwargs)

  def forward(self, x):
    return self.visual(x)


class TransReID(nn.Module):
  """TransReID's ReID model: `base` CLS feature -> `bottleneck` BN (frozen bias) -> bias-free `classifier`.

  Returns (pre-BN feature, BN feature, logits). `base` is any module with a
  `num_features` attribute returning (B, num_features): a VisionTransformer or
  the CLIP tower (DCAC's encoder).
  """

  def __init__(self, base, num_classes):
    super().__init__()
    self.base = base
    self.bottleneck = nn.BatchNorm1d(base.num_features)
    self.bottleneck.bias.requires_grad_(False)
    self.classifier = nn.Linear(base.num_features, num_classes, bias=False)
    nn.init.normal_(self.classifier.weight, std=0.001)

  def forward(self, x):
    feature = self.base(x)
    neck = self.bottleneck(feature)
    return feature, neck, self.classifier(neck)


def randomize(model, seed=0):
  """Random non-trivial values in every parameter and norm statistic; returns the model in eval mode.

  Norm scales ~U(0.5, 1.5), biases ~N(0, 0.1), BN running means ~N(0, 0.1)
  and variances ~U(0.5, 1.5); Linear / conv / attention weights ~N(0, 1/fan_in)
  so a 12-block ViT's residual stream stays O(1); token and position
  embeddings ~N(0, 0.02); CLIP's `proj` ~N(0, 1/width).
  """
  generator = torch.Generator().manual_seed(seed)

  def normal(t, std):
    t.copy_(torch.randn(t.shape, generator=generator) * std)

  def uniform(t, low, high):
    t.copy_(torch.rand(t.shape, generator=generator) * (high - low) + low)

  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm2d)):
        uniform(module.weight, 0.5, 1.5)
        normal(module.bias, 0.1)
      if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        normal(module.running_mean, 0.1)
        uniform(module.running_var, 0.5, 1.5)
      if isinstance(module, (nn.Linear, nn.Conv2d)):
        normal(module.weight, 1 / math.sqrt(module.weight[0].numel()))
        if module.bias is not None:
          normal(module.bias, 0.1)
      if isinstance(module, nn.MultiheadAttention):  # its out_proj is a Linear, handled above
        normal(module.in_proj_weight, 1 / math.sqrt(module.embed_dim))
        normal(module.in_proj_bias, 0.1)
      if isinstance(module, VisionTransformer):
        normal(module.cls_token, 0.02)
        normal(module.pos_embed, 0.02)
      if isinstance(module, CLIPVisual):
        normal(module.class_embedding, 0.02)
        normal(module.positional_embedding, 0.02)
        normal(module.proj, 1 / math.sqrt(module.proj.shape[0]))
  return model.eval()
