"""The PyTorch ViT references (`benchmarks/torch_vit.py`) against hand-checkable facts.

They are the other side of jreid's ViT parity tests and of the ViT train-step
benchmark, so their own layout is checked here: token grids, the exact
state-dict names and shapes of the published layouts, the activations, the
attention and the whole forward pass written out in numpy, and drop path.
"""
import math

import numpy as np
import pytest
import torch
from scipy.special import erf

from benchmarks import torch_vit

torch.set_num_threads(1)
DIM, HEADS = 16, 2  # the small width of the key-list and numpy checks


def small_vit(size=(32, 32), **options):
  options = {"embed_dim": DIM, "depth": 1, "num_heads": HEADS, **options}
  return torch_vit.VisionTransformer(size, **options)


@pytest.mark.parametrize("size,options,grid", [
    ((224, 224), {}, (14, 14)), ((256, 128), {}, (16, 8)),
    ((256, 128), {"stride": 12}, (21, 10)),  # TransReID's overlapping patches
    ((256, 128), {"stem_conv": True}, (16, 8))])  # ICS: stride-2 stem, then 8x8 patches
def test_the_token_grid_is_what_the_convolution_gives(size, options, grid):
  model = small_vit(size, **options).eval()
  assert model.patch_embed.grid == grid
  assert model.pos_embed.shape == (1, 1 + grid[0] * grid[1], DIM)
  with torch.no_grad():
    tokens = model.forward_tokens(torch.zeros(1, 3, *size))
  assert tokens.shape == (1, 1 + grid[0] * grid[1], DIM)


def test_clip_grid_and_output():
  model = torch_vit.CLIPVisual((256, 128), patch_size=16, width=DIM, layers=1, heads=HEADS,
                               output_dim=8).eval()
  assert model.positional_embedding.shape == (1 + 16 * 8, DIM)
  with torch.no_grad():
    assert model(torch.zeros(2, 3, 256, 128)).shape == (2, 8)
  assert torch_vit.CLIPVisual((224, 224)).positional_embedding.shape == (197, 768)  # OpenAI's ViT-B/16


def shapes(model):
  return {name: tuple(value.shape) for name, value in model.state_dict().items()}


BLOCK = {"blocks.0.norm1.weight": (16,), "blocks.0.norm1.bias": (16,),
         "blocks.0.attn.qkv.weight": (48, 16), "blocks.0.attn.qkv.bias": (48,),
         "blocks.0.attn.proj.weight": (16, 16), "blocks.0.attn.proj.bias": (16,),
         "blocks.0.norm2.weight": (16,), "blocks.0.norm2.bias": (16,),
         "blocks.0.mlp.fc1.weight": (64, 16), "blocks.0.mlp.fc1.bias": (64,),
         "blocks.0.mlp.fc2.weight": (16, 64), "blocks.0.mlp.fc2.bias": (16,),
         "norm.weight": (16,), "norm.bias": (16,)}


def test_vit_state_dict_is_the_timm_layout():
  assert shapes(small_vit((32, 32))) == {
      "cls_token": (1, 1, 16), "pos_embed": (1, 5, 16),
      "patch_embed.proj.weight": (16, 3, 16, 16), "patch_embed.proj.bias": (16,), **BLOCK}


def test_ics_state_dict_is_the_transreid_ssl_layout():
  ibn = lambda i: {f"patch_embed.conv.{i}.IN.weight": (32,), f"patch_embed.conv.{i}.IN.bias": (32,),
                   f"patch_embed.conv.{i}.BN.weight": (32,), f"patch_embed.conv.{i}.BN.bias": (32,),
                   f"patch_embed.conv.{i}.BN.running_mean": (32,),
                   f"patch_embed.conv.{i}.BN.running_var": (32,),
                   f"patch_embed.conv.{i}.BN.num_batches_tracked": ()}
  assert shapes(small_vit((32, 32), stem_conv=True)) == {
      "cls_token": (1, 1, 16), "pos_embed": (1, 5, 16),
      "patch_embed.conv.0.weight": (64, 3, 7, 7), **ibn(1),
      "patch_embed.conv.3.weight": (64, 64, 3, 3), **ibn(4),
      "patch_embed.conv.6.weight": (64, 64, 3, 3),
      "patch_embed.conv.7.weight": (64,), "patch_embed.conv.7.bias": (64,),
      "patch_embed.conv.7.running_mean": (64,), "patch_embed.conv.7.running_var": (64,),
      "patch_embed.conv.7.num_batches_tracked": (),
      "patch_embed.proj.weight": (16, 64, 8, 8), "patch_embed.proj.bias": (16,), **BLOCK}


def test_clip_state_dict_is_openais_layout():
  block = "visual.transformer.resblocks.0."
  assert shapes(torch_vit.CLIPImageEncoder(input_resolution=(32, 32), width=16, layers=1, heads=2,
                                           output_dim=8)) == {
      "visual.class_embedding": (16,), "visual.positional_embedding": (5, 16), "visual.proj": (16, 8),
      "visual.conv1.weight": (16, 3, 16, 16), "visual.ln_pre.weight": (16,), "visual.ln_pre.bias": (16,),
      block + "attn.in_proj_weight": (48, 16), block + "attn.in_proj_bias": (48,),
      block + "attn.out_proj.weight": (16, 16), block + "attn.out_proj.bias": (16,),
      block + "ln_1.weight": (16,), block + "ln_1.bias": (16,),
      block + "mlp.c_fc.weight": (64, 16), block + "mlp.c_fc.bias": (64,),
      block + "mlp.c_proj.weight": (16, 64), block + "mlp.c_proj.bias": (16,),
      block + "ln_2.weight": (16,), block + "ln_2.bias": (16,),
      "visual.ln_post.weight": (16,), "visual.ln_post.bias": (16,)}


def test_transreid_state_dict_and_outputs():
  model = torch_vit.TransReID(small_vit((32, 32)), num_classes=5)
  assert shapes(model) == {
      **{"base." + k: v for k, v in shapes(small_vit((32, 32))).items()},
      "bottleneck.weight": (16,), "bottleneck.bias": (16,), "bottleneck.running_mean": (16,),
      "bottleneck.running_var": (16,), "bottleneck.num_batches_tracked": (), "classifier.weight": (5, 16)}
  assert not model.bottleneck.bias.requires_grad and model.bottleneck.weight.requires_grad
  torch_vit.randomize(model, seed=3)
  x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
  with torch.no_grad():
    feature, neck, logits = model(x)
    torch.testing.assert_close(feature, model.base(x))
  bn = model.bottleneck
  expected = (feature - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
  torch.testing.assert_close(neck, expected)
  torch.testing.assert_close(logits, neck @ model.classifier.weight.T)


def test_quick_gelu_is_clips_and_the_vit_gelu_is_exact():
  points = torch.tensor([-1.0, 1.0, 2.0])
  # x * sigmoid(1.702 x) and x * Phi(x) by hand at -1, 1, 2.
  quick = [-1 / (1 + math.exp(1.702)), 1 / (1 + math.exp(-1.702)), 2 / (1 + math.exp(-3.404))]
  exact = [-0.15865525, 0.84134475, 1.95449974]
  clip_block = torch_vit.CLIPVisual((16, 16), width=16, layers=1, heads=2).transformer.resblocks[0]
  vit_block = small_vit((16, 16)).blocks[0]
  np.testing.assert_allclose(clip_block.mlp.gelu(points).numpy(), quick, rtol=1e-6)
  np.testing.assert_allclose(vit_block.mlp.act(points).numpy(), exact, rtol=1e-6)
  assert abs(quick[1] - exact[1]) > 4e-3  # the two differ where it shows


def layer_norm(x, weight, bias, eps):
  mean = x.mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps) * weight + bias


def attention(x, w_qkv, b_qkv, w_out, b_out, heads):
  """softmax(q k^T / sqrt(head_dim)) v per head; q, k, v packed in that order along the 3D output."""
  batch, tokens, dim = x.shape
  q, k, v = np.split(x @ w_qkv.T + b_qkv, 3, axis=-1)
  split = lambda t: t.reshape(batch, tokens, heads, dim // heads).transpose(0, 2, 1, 3)
  q, k, v = split(q), split(k), split(v)
  logits = q @ k.transpose(0, 1, 3, 2) * (dim // heads) ** -0.5
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  out = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, tokens, dim)
  return out @ w_out.T + b_out


def patches(x, weight, bias, patch):
  """A stride = kernel conv as a matmul over row-major patches (the token order pos_embed assumes)."""
  batch, chans, height, width = x.shape
  h, w = height // patch, width // patch
  cut = x.reshape(batch, chans, h, patch, w, patch).transpose(0, 2, 4, 1, 3, 5).reshape(batch, h * w, -1)
  out = cut @ weight.reshape(weight.shape[0], -1).T
  return out if bias is None else out + bias


def test_vit_forward_written_out_in_numpy():
  model = torch_vit.randomize(small_vit((32, 48)), seed=1)
  p = {k: v.numpy().astype(np.float64) for k, v in model.state_dict().items()}
  x = np.random.default_rng(0).normal(size=(2, 3, 32, 48))
  t = patches(x, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], 16)
  t = np.concatenate([np.broadcast_to(p["cls_token"], (2, 1, DIM)), t], 1) + p["pos_embed"]
  b = "blocks.0."
  t = t + attention(layer_norm(t, p[b + "norm1.weight"], p[b + "norm1.bias"], 1e-6),
                    p[b + "attn.qkv.weight"], p[b + "attn.qkv.bias"], p[b + "attn.proj.weight"],
                    p[b + "attn.proj.bias"], HEADS)
  hidden = layer_norm(t, p[b + "norm2.weight"], p[b + "norm2.bias"], 1e-6) @ p[b + "mlp.fc1.weight"].T
  hidden = hidden + p[b + "mlp.fc1.bias"]
  hidden = hidden * 0.5 * (1 + erf(hidden / np.sqrt(2)))
  t = t + hidden @ p[b + "mlp.fc2.weight"].T + p[b + "mlp.fc2.bias"]
  expected = layer_norm(t, p["norm.weight"], p["norm.bias"], 1e-6)
  with torch.no_grad():
    tokens = model.forward_tokens(torch.from_numpy(x).float()).numpy()
    cls = model(torch.from_numpy(x).float()).numpy()
  np.testing.assert_allclose(tokens, expected, atol=2e-5)
  np.testing.assert_allclose(cls, expected[:, 0], atol=2e-5)


def test_clip_forward_written_out_in_numpy():
  model = torch_vit.randomize(torch_vit.CLIPVisual((32, 48), width=DIM, layers=1, heads=HEADS,
                                                   output_dim=8), seed=2)
  p = {k: v.numpy().astype(np.float64) for k, v in model.state_dict().items()}
  x = np.random.default_rng(1).normal(size=(2, 3, 32, 48))
  t = patches(x, p["conv1.weight"], None, 16)
  t = np.concatenate([np.broadcast_to(p["class_embedding"], (2, 1, DIM)), t], 1) + p["positional_embedding"]
  t = layer_norm(t, p["ln_pre.weight"], p["ln_pre.bias"], 1e-5)
  b = "transformer.resblocks.0."
  t = t + attention(layer_norm(t, p[b + "ln_1.weight"], p[b + "ln_1.bias"], 1e-5),
                    p[b + "attn.in_proj_weight"], p[b + "attn.in_proj_bias"],
                    p[b + "attn.out_proj.weight"], p[b + "attn.out_proj.bias"], HEADS)
  hidden = layer_norm(t, p[b + "ln_2.weight"], p[b + "ln_2.bias"], 1e-5) @ p[b + "mlp.c_fc.weight"].T
  hidden = hidden + p[b + "mlp.c_fc.bias"]
  hidden = hidden / (1 + np.exp(-1.702 * hidden))
  t = t + hidden @ p[b + "mlp.c_proj.weight"].T + p[b + "mlp.c_proj.bias"]
  expected = layer_norm(t[:, 0], p["ln_post.weight"], p["ln_post.bias"], 1e-5) @ p["proj"]
  with torch.no_grad():
    np.testing.assert_allclose(model(torch.from_numpy(x).float()).numpy(), expected, atol=2e-5)


def test_drop_path_rates_are_linear_over_depth_and_identity_in_eval():
  model = small_vit((32, 32), depth=3, drop_path_rate=0.5)
  assert [block.drop_path.drop_prob for block in model.blocks] == [0.0, 0.25, 0.5]
  torch_vit.randomize(model, seed=4)
  plain = small_vit((32, 32), depth=3)
  plain.load_state_dict(model.state_dict())
  x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
  with torch.no_grad():
    torch.testing.assert_close(model.eval()(x), plain.eval()(x), rtol=0, atol=0)


def test_drop_path_in_train_mode_drops_whole_samples():
  torch.manual_seed(0)
  drop = torch_vit.DropPath(0.5).train()
  out = drop(torch.ones(64, 5, 3))
  per_sample = out.reshape(64, -1)
  assert set(per_sample.unique().tolist()) == {0.0, 2.0}  # dropped, or kept and scaled by 1 / 0.5
  assert (per_sample.min(1).values == per_sample.max(1).values).all()  # never part of a sample
  assert 10 < int((per_sample[:, 0] == 0).sum()) < 54


def test_randomize_gives_every_tensor_a_non_trivial_value():
  model = torch_vit.randomize(torch_vit.TransReID(small_vit((32, 32), stem_conv=True), 5), seed=0)
  for name, value in model.state_dict().items():
    if not name.endswith("num_batches_tracked"):
      assert value.numel() == 1 or value.std() > 0.01, name
  for module in model.modules():
    if isinstance(module, torch.nn.LayerNorm):
      assert 0.5 <= module.weight.min() and module.weight.max() <= 1.5 and module.weight.std() > 0.1
    if isinstance(module, torch.nn.BatchNorm2d):
      assert module.running_var.min() >= 0.5


def test_randomized_vit_s_keeps_its_residual_stream_order_one():
  model = torch_vit.randomize(torch_vit.VisionTransformer((64, 32)), seed=0)  # ViT-S/16, 12 blocks
  seen = []
  model.norm.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
  with torch.no_grad():
    model(torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(0)))
  assert 0.5 < float(seen[0].std()) < 10
