"""DCAC's diffusion condition (Li & Gong, Sec. 4.3): what the UNet's cross-attention reads about an image.

Three schemes, the paper's Tab. 7 ablation, all one token of the UNet's
cross-attention width (768 for Stable Diffusion v1.5), shape (B, 1, dim):

  correlation  c = softmax(logits / tau_c) @ P: every identity prompt weighted by
               the classifier's probability, so the classifier's "dark knowledge"
               (which ids the image resembles) shapes the condition (Eq. 12);
  class        c = p_y * P[y]: the true class's prompt scaled by its probability,
               the other probabilities reset to zero, which erases the dark
               knowledge but keeps a gradient path to the encoder;
  instance     c = Dense(feature): the image's own feature projected to dim (the
               SODA / DIVA style of conditioning).

The prompts P (N x dim) are initialised N(0, 1). Nothing here is detached:
the diffusion loss trains the encoder through the probabilities (or the
feature), which is how DCAC's diffusion feedback reaches the ReID model.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

SCHEMES = ("correlation", "class", "instance")


class Condition(nn.Module):
  num_classes: int
  dim: int = 768
  scheme: str = "correlation"
  temperature: float = 0.6  # tau_c: 0.1 CUHK03, 0.6 Market / Duke, 1.0 MSMT17 and multi-source

  @nn.compact
  def __call__(self, logits: jax.Array, feature: jax.Array, labels: jax.Array) -> jax.Array:
    if self.scheme == "instance":
      return nn.Dense(self.dim, name="instance_proj")(feature)[:, None, :]
    prompts = self.param("prompts", nn.initializers.normal(stddev=1.0), (self.num_classes, self.dim))
    probs = jax.nn.softmax(logits.astype(jnp.float32) / self.temperature, axis=-1)
    if self.scheme == "class":
      probs = probs * jax.nn.one_hot(labels, self.num_classes, dtype=probs.dtype)
    elif self.scheme != "correlation":
      raise ValueError(f"condition scheme {self.scheme!r}; choose one of {SCHEMES}")
    context = jnp.matmul(probs, prompts.astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)
    return context[:, None, :]
