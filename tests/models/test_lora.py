"""LoRA over diffusers' FlaxUNet2DConditionModel params: targets, init, merge against the unmerged path.

The reference for `merge` is the computation LoRA defines, run without
merging: the frozen UNet with scale * (x @ A) @ B added to each targeted
Dense's output at run time (flax's `nn.intercept_methods`, matched by module
path). The tiny UNet's weights are drawn in numpy from abstract shapes, as
tests/models/conftest.py does for the backbones (a real `init_weights` runs
op by op for ~40 s on CPU).
"""
import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jreid.errors import CheckpointMismatchError, ConfigError
from jreid.models import lora
from tests.conftest import random_flax_params

RANK = 4
# The targets of one transformer block, as diffusers' Flax classes name them.
BLOCK_TARGETS = [f"attn{i}/to_{name}/kernel" for i in (1, 2) for name in ("k", "out_0", "q", "v")] + \
    ["ff/net_0/proj/kernel"]


def _tiny_unet():
  from diffusers import FlaxUNet2DConditionModel
  return FlaxUNet2DConditionModel(
      block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32, attention_head_dim=8,
      sample_size=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
      up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))


def _random_params(shapes, seed=0):
  return random_flax_params(shapes, seed, spread=0.1)


def _with_random_b(tree, seed=1):
  """The LoRA tree with every B drawn N(0, 1): a zero B would make every equality trivial."""
  rng = np.random.default_rng(seed)
  def fill(path, leaf):
    return rng.normal(size=leaf.shape).astype(np.float32) if path[-1].key == "b" else leaf

  return jax.tree_util.tree_map_with_path(fill, tree)


@pytest.fixture(scope="module")
def tiny():
  unet = _tiny_unet()
  params = _random_params(jax.eval_shape(unet.init_weights, jax.random.key(0)))
  factors = _with_random_b(lora.init(jax.random.key(1), params, RANK))
  rng = np.random.default_rng(2)
  sample = jnp.asarray(rng.normal(size=(2, 4, 8, 8)), jnp.float32)  # NCHW latents, as the UNet takes them
  timesteps = jnp.array([3, 700])
  return unet, params, factors, sample, timesteps, rng


def _low_rank_path(factors, scale, calls):
  """An interceptor adding scale * (x @ A) @ B to each targeted Dense's output: LoRA unmerged."""
  by_module = {path.removesuffix("/kernel"): ab for path, ab in lora.factors(factors).items()}

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    name = "/".join(context.module.path)
    if isinstance(context.module, nn.Dense) and context.method_name == "__call__" and name in by_module:
      a, b = by_module[name]
      calls.append(name)
      out = out + scale * (args[0] @ a) @ b
    return out

  return interceptor


def test_dcac_targets_in_the_tiny_unet_are_nine_per_transformer_block(tiny):
  _, params, factors, *_ = tiny
  found = lora.target_paths(params)
  blocks = sorted({path.split("/transformer_blocks_0/")[0] for path in found})
  assert blocks == ["down_blocks_0/attentions_0", "mid_block/attentions_0",
                    "up_blocks_1/attentions_0", "up_blocks_1/attentions_1"]
  assert found == sorted(f"{block}/transformer_blocks_0/{t}" for block in blocks for t in BLOCK_TARGETS)
  assert sorted(lora.factors(factors)) == found


def test_merged_unet_equals_the_frozen_unet_plus_the_low_rank_path_at_run_time(tiny):
  unet, params, factors, sample, timesteps, rng = tiny
  context = jnp.asarray(rng.normal(size=(2, 3, 32)), jnp.float32)  # 3 tokens: attn2's q/k matter
  scale = lora.lora_scale(RANK)
  calls = []

  @jax.jit
  def forward(frozen, factors):  # the frozen UNet plus the low-rank path: LoRA as defined, unmerged
    with nn.intercept_methods(_low_rank_path(factors, scale, calls)):
      return unet.apply({"params": frozen}, sample, timesteps, context).sample

  # Zero factors make the added path exactly 0, so one compiled program runs all three UNets.
  no_lora = jax.tree.map(jnp.zeros_like, factors)
  unmerged = np.asarray(forward(params, factors))
  merged = np.asarray(forward(lora.merge(params, factors, scale), no_lora))
  plain = np.asarray(forward(params, no_lora))
  # Each target's Dense ran the low-rank path once, found by its module path.
  assert sorted(calls) == [path.removesuffix("/kernel") for path in lora.target_paths(params)]
  assert len(calls) == 36
  # Measured max |diff| 2.1e-6 on outputs of std 0.6 (float32 reassociation); LoRA moves them by up to 1.1.
  np.testing.assert_allclose(merged, unmerged, atol=2e-5, rtol=0)
  assert np.abs(merged - plain).max() > 0.1


def test_one_token_context_gives_attn2_query_and_key_lora_exactly_zero_gradient(tiny):
  unet, params, factors, sample, timesteps, rng = tiny
  context = jnp.asarray(rng.normal(size=(2, 1, 32)), jnp.float32)  # DCAC's c: [B, 1, 768]
  scale = lora.lora_scale(RANK)

  @jax.jit
  def grads(frozen, factors):
    def loss(factors):
      out = unet.apply({"params": lora.merge(frozen, factors, scale)}, sample, timesteps, context).sample
      return jnp.mean(out ** 2)
    return jax.grad(loss)(factors)

  by_path = {path: tuple(map(np.asarray, ab)) for path, ab in lora.factors(grads(params, factors)).items()}
  for path, (grad_a, grad_b) in by_path.items():
    if re.search(r"attn2/to_[qk]/", path):
      assert not grad_a.any() and not grad_b.any(), path
    else:  # attn1's q/k/v/out, attn2's v/out, the GEGLU projection all learn
      assert np.abs(grad_a).max() > 1e-6 and np.abs(grad_b).max() > 1e-6, path
  assert sum(bool(re.search(r"attn2/to_[qk]/", path)) for path in by_path) == 8 and len(by_path) == 36


def test_init_draws_a_within_the_torch_kaiming_bound_and_zero_b(tiny):
  import torch
  _, params, *_ = tiny
  flat = traverse_util.flatten_dict(params, sep="/")
  fresh = lora.factors(lora.init(jax.random.key(3), params, 8))
  gain = torch.nn.init.calculate_gain("leaky_relu", math.sqrt(5))  # loralib's kaiming_uniform_(a=sqrt(5))
  pooled = []
  for path, (a, b) in fresh.items():
    fan_in, fan_out = flat[path].shape
    bound = gain * math.sqrt(3 / fan_in)
    assert a.shape == (fan_in, 8) and b.shape == (8, fan_out) and a.dtype == b.dtype == jnp.float32
    assert not np.asarray(b).any()
    assert np.abs(a).max() <= bound * (1 + 1e-6) and np.abs(a).max() > 0.9 * bound
    pooled.append(np.asarray(a).ravel() / bound)
  pooled = np.concatenate(pooled)  # U(-1, 1): mean 0, variance 1/3
  assert abs(pooled.mean()) < 0.02 and abs(pooled.var() - 1 / 3) < 0.01
  # The factors differ across targets (one key each), and the key decides them.
  a_values = [np.asarray(a) for a, _ in fresh.values() if a.shape == (32, 8)]
  assert not np.array_equal(a_values[0], a_values[1])
  again = lora.factors(lora.init(jax.random.key(3), params, 8))
  assert all(np.array_equal(fresh[p][0], again[p][0]) for p in fresh)


def test_bad_targets_and_ranks_are_clear_errors(tiny):
  _, params, *_ = tiny
  with pytest.raises(ConfigError, match="matches no parameter.*paths look like"):
    lora.init(jax.random.key(0), params, 8, pattern=r".*/to_qq/kernel")
  with pytest.raises(ConfigError, match="2-D Dense kernels"):
    lora.target_paths(params, r".*attn1/to_out_0/bias")
  with pytest.raises(ConfigError, match="positive integer"):
    lora.init(jax.random.key(0), params, 0)


def test_merge_keeps_other_leaves_and_the_kernel_dtype():
  rng = np.random.default_rng(0)
  frozen = {"block": {"to_q": {"kernel": jnp.asarray(rng.normal(size=(6, 5)), jnp.bfloat16)},
                      "norm": {"scale": jnp.ones(5)}}}
  factors = _with_random_b(lora.init(jax.random.key(0), frozen, 2, pattern=r".*/kernel"))
  a, b = lora.factors(factors)["block/to_q/kernel"]
  merged = lora.merge(frozen, factors, 0.5)
  kernel = merged["block"]["to_q"]["kernel"]
  want = (np.asarray(frozen["block"]["to_q"]["kernel"], np.float64) + 0.5 * np.asarray(a, np.float64) @ b)
  assert kernel.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(kernel, np.float64), want, rtol=2 ** -8, atol=1e-6)  # bf16 rounding
  assert merged["block"]["norm"]["scale"] is frozen["block"]["norm"]["scale"]
  zero_b = lora.init(jax.random.key(0), frozen, 2, pattern=r".*/kernel")
  unchanged = lora.merge(frozen, zero_b, 0.5)["block"]["to_q"]["kernel"]
  assert np.array_equal(unchanged, frozen["block"]["to_q"]["kernel"])
  with pytest.raises(CheckpointMismatchError, match="no kernel in the frozen params"):
    lora.merge({"other": frozen["block"]}, factors, 0.5)


def test_sd15_has_144_targets_and_the_lora_parameter_count_of_its_kernel_shapes():
  from diffusers import FlaxUNet2DConditionModel
  unet = FlaxUNet2DConditionModel(cross_attention_dim=768, block_out_channels=(320, 640, 1280, 1280),
                                  attention_head_dim=8, layers_per_block=2, sample_size=64)
  shapes = jax.eval_shape(unet.init_weights, jax.random.key(0))  # abstract: no 860M-parameter init
  found = lora.target_paths(shapes)
  blocks = {re.match(r"(.*/transformer_blocks_\d+)/", path).group(1) for path in found}
  assert len(found) == 144 and len(blocks) == 16
  assert "down_blocks_0/attentions_0/transformer_blocks_0/attn1/to_q/kernel" in found
  assert "up_blocks_3/attentions_2/transformer_blocks_0/ff/net_0/proj/kernel" in found
  flat = traverse_util.flatten_dict(shapes, sep="/")
  for rank in (8, 32):
    factors = jax.eval_shape(lambda: lora.init(jax.random.key(0), shapes, rank))
    from_shapes = sum(rank * (flat[p].shape[0] + flat[p].shape[1]) for p in found)
    # By hand: a block of width C has q,k,v,out of attn1 (C->C), attn2's q and out (C->C), its k and v
    # (768->C) and GEGLU's proj (C->8C): r (23 C + 1536); blocks 5 x 320, 5 x 640, 6 x 1280.
    by_hand = rank * sum(n * (23 * c + 1536) for n, c in ((5, 320), (5, 640), (6, 1280)))
    assert lora.num_params(factors) == from_shapes == by_hand == {8: 2_492_928, 32: 9_971_712}[rank]
