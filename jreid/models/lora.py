"""LoRA (Hu et al., 2021) as its own pytree beside a frozen Flax parameter tree, as DCAC uses it.

A target is a 2-D Dense kernel W (in, out) picked by a path pattern over the
frozen tree (`jreid.core.tree_paths`: '/'-joined, the whole path matched).
The LoRA tree mirrors the frozen one with each target kernel replaced by
`{"a": A (in, r), "b": B (r, out)}`, e.g.
`down_blocks_0/attentions_0/transformer_blocks_0/attn1/to_q/kernel/a`, so
the optimizer, checkpoints and parameter groups see only the low-rank
factors, and `merge` lays W + scale A @ B back for one forward pass. The
frozen weights are always an argument, never captured, so a jitted step
never bakes 860M constants into its program.

`DCAC_TARGETS` is DCAC's choice on diffusers' `FlaxUNet2DConditionModel`:
to_q, to_k, to_v and to_out_0 of both attentions (`attn1` self, `attn2`
cross) and the GEGLU input projection `ff/net_0/proj` of every transformer
block, 144 kernels in SD-1.5 (16 blocks x 9). Initialisation is loralib's:
A kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)) as
torch's nn.Linear, B zero, so fresh LoRA leaves the UNet unchanged; scale =
alpha / r with DCAC's alpha = 1.

Two things a reader comparing with the release should know:
  - the release swaps SD's bias-free to_q/to_k/to_v for loralib's
    `lora.Linear`, which keeps nn.Linear's bias: randomly initialised, never
    loaded, then frozen with everything but the LoRA factors, so every query,
    key and value gets a constant random offset. That is an accident and is
    not reproduced here: the targets keep SD's bias-free projections.
  - DCAC's context is one token, so each cross-attention's softmax is over a
    single key and is identically 1: the output is to_out(to_v(c)) whatever
    the queries and keys, and LoRA on attn2's to_q/to_k gets exactly zero
    gradient. They are kept as targets for fidelity to the release (and
    counted in its trainable parameters).
"""
from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
from flax import traverse_util

from jreid.core.tree_paths import SEP, matcher
from jreid.errors import CheckpointMismatchError, ConfigError

DCAC_TARGETS = r"(.*/)?transformer_blocks_\d+/(attn[12]/to_(q|k|v|out_0)|ff/net_0/proj)/kernel"


def _flat(tree) -> dict:
  return traverse_util.flatten_dict(tree, sep=SEP)


def lora_scale(rank: int, alpha: float = 1.0) -> float:
  """loralib's scaling alpha / r (DCAC: alpha 1, so 1 / r)."""
  return alpha / rank


def target_paths(params, pattern: str = DCAC_TARGETS) -> list[str]:
  """The sorted paths of the kernels `pattern` picks; each must be a 2-D (in, out) kernel."""
  matches = matcher(pattern)
  flat = _flat(params)
  found = sorted(path for path in flat if matches(path))
  if not found:
    example = min(flat, default="(empty tree)")
    raise ConfigError(f"LoRA target pattern {pattern!r} matches no parameter; paths look like {example!r}")
  for path in found:
    shape = flat[path].shape
    if len(shape) != 2:
      raise ConfigError(f"LoRA target {path!r} has shape {tuple(shape)}; the pattern must pick 2-D "
                        "Dense kernels (in, out)")
  return found


def init(rng: jax.Array, params, rank: int, pattern: str = DCAC_TARGETS) -> dict:
  """Fresh LoRA factors for every target of `params` (shapes only are read: an abstract tree works).

  A (in, r) ~ U(-1/sqrt(in), 1/sqrt(in)), loralib's kaiming_uniform_(a=sqrt(5))
  on its (r, in) lora_A, transposed to the Flax (in, out) layout; B (r, out) = 0.
  Factors are float32 whatever the frozen dtype: they are what the optimizer updates.
  """
  if rank < 1:
    raise ConfigError(f"LoRA rank must be a positive integer, got {rank}")
  flat = _flat(params)
  shapes = {path: flat[path].shape for path in target_paths(params, pattern)}

  @jax.jit
  def draw(rng):  # one U(-1, 1) draw cut into every A: one threefry, not one per target (5x the compile)
    sizes = [fan_in * rank for fan_in, _ in shapes.values()]
    unit = jax.random.uniform(rng, (sum(sizes),), jnp.float32, -1.0, 1.0)
    pieces = jnp.split(unit, list(itertools.accumulate(sizes))[:-1])
    lora = {}
    for piece, (path, (fan_in, fan_out)) in zip(pieces, shapes.items()):
      lora[path + SEP + "a"] = piece.reshape(fan_in, rank) / math.sqrt(fan_in)
      lora[path + SEP + "b"] = jnp.zeros((rank, fan_out), jnp.float32)
    return lora

  return traverse_util.unflatten_dict(draw(rng), sep=SEP)


def factors(lora) -> dict:
  """{target kernel path: (A, B)}."""
  flat = _flat(lora)
  targets = sorted({path.rsplit(SEP, 1)[0] for path in flat})
  return {path: (flat[path + SEP + "a"], flat[path + SEP + "b"]) for path in targets}


def merge(params, lora, scale: float) -> dict:
  """`params` with each target kernel W replaced by W + scale * A @ B.

  The update is formed in float32 and cast back to W's dtype, so a bf16/fp16
  frozen UNet gets the same low-rank update as a float32 one. Other leaves
  are passed through untouched.
  """
  flat = dict(_flat(params))
  for path, (a, b) in factors(lora).items():
    if path not in flat:
      raise CheckpointMismatchError(f"LoRA factor for {path!r} has no kernel in the frozen params; "
                                    "build the LoRA from the same model's tree")
    kernel = flat[path]
    if kernel.shape != (a.shape[0], b.shape[1]):
      raise CheckpointMismatchError(f"LoRA factors for {path!r} make {(a.shape[0], b.shape[1])}, "
                                    f"the kernel is {tuple(kernel.shape)}")
    update = scale * (a.astype(jnp.float32) @ b.astype(jnp.float32))
    flat[path] = (kernel.astype(jnp.float32) + update).astype(kernel.dtype)
  return traverse_util.unflatten_dict(flat, sep=SEP)


def num_params(lora) -> int:
  """Trainable LoRA parameters: sum over targets of r * (in + out)."""
  return int(sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(lora)))
