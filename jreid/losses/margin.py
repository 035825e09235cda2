"""Margin softmax heads (ArcFace, CosFace, CircleSoftmax) as logit functions.

Each takes the cosines between embeddings and class centres, (B, K) from
`cosine_logits(features, weights)` (which a head with `cosine=True` returns
as its `logits`), and returns (B, K) margin logits for `cross_entropy`: the
margin needs the label, so it belongs with the loss, while the cosines belong
with the head, which may be one of several (MGN has eight). `weights` is
(D, K), a flax kernel (`head/classifier/kernel`), i.e. FastReID's (K, D)
class centres transposed; each column is normalised.

A label of -1 (FastReID's marker for a sample whose class centre lives on
another model-parallel rank) gets no target column: ArcFace and CosFace leave
its row at s * cos, CircleSoftmax treats every column as a negative, both as
FastReID does.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
  """x / max(|x|, 1e-12) along `axis`, as torch's F.normalize.

  |x| is taken as sqrt(max(|x|^2, 1e-24)): the same value, but a finite
  gradient at x = 0, where the gradient of jnp.linalg.norm is NaN.
  """
  x = x.astype(jnp.float32)
  return x / jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), 1e-24))


def cosine_logits(features: jax.Array, weights: jax.Array) -> jax.Array:
  """cos(theta_{ik}) between feature i (B, D) and class column k of weights (D, K).

  Not clipped to [-1, 1]: rounding can leave a value 1e-7 outside, which is
  harmless here, while a clip would halve the gradient of an exactly aligned
  pair. The matmul runs at HIGHEST precision so TF32/bf16 matmuls on an
  accelerator do not blur the margins.
  """
  return jnp.matmul(l2_normalize(features, -1), l2_normalize(weights, 0),
                    precision=jax.lax.Precision.HIGHEST)


def _target_mask(labels: jax.Array, num_classes: int) -> jax.Array:
  return jax.nn.one_hot(labels, num_classes, dtype=bool)


def arcface_logits(cos: jax.Array, labels: jax.Array,
                   scale: float = 64.0, margin: float = 0.5) -> jax.Array:
  """ArcFace (Deng et al., CVPR 2019, Eq. 3): s * cos(theta_y + m) on the target, s * cos elsewhere.

  cos(theta + m) is expanded as cos(theta) cos(m) - sin(theta) sin(m) with
  sin(theta) = sqrt(max(1 - cos^2, 1e-12)); the floor keeps the gradient
  finite at cos = +-1 and moves the logit by at most s * 1e-6 * sin(m).

  Past theta + m > pi, i.e. cos(theta) <= cos(pi - m), cos(theta + m) would
  rise again as theta grows, rewarding a worse angle. There we use
  insightface's fallback s * (cos(theta) - m sin(m)) (a CosFace margin of
  m sin(m)), which keeps the target logit decreasing in theta; at
  theta = pi - m it steps down from cos(pi) = -1 to -cos(m) - m sin(m)
  (-1.117 for m = 0.5), as insightface's does. FastReID's `ArcSoftmax`
  applies acos/cos with no fallback; the two agree whenever theta <= pi - m
  (about 151 degrees for m = 0.5), i.e. on every target that is not nearly
  opposite its class centre. No "easy margin" variant.
  """
  sin = jnp.sqrt(jnp.maximum(1.0 - cos * cos, 1e-12))
  # jnp, not math: a margin may be traced (a jitted argument, a schedule).
  cos_plus_m = cos * jnp.cos(margin) - sin * jnp.sin(margin)
  target = jnp.where(cos > jnp.cos(jnp.pi - margin), cos_plus_m,
                     cos - margin * jnp.sin(margin))
  mask = _target_mask(labels, cos.shape[-1])
  return scale * jnp.where(mask, target, cos)


def cosface_logits(cos: jax.Array, labels: jax.Array,
                   scale: float = 64.0, margin: float = 0.35) -> jax.Array:
  """CosFace / LMCL (Wang et al., CVPR 2018, Eq. 4): s * (cos - m) on the target, s * cos elsewhere."""
  mask = _target_mask(labels, cos.shape[-1])
  return scale * jnp.where(mask, cos - margin, cos)


def circle_logits(cos: jax.Array, labels: jax.Array,
                  scale: float = 64.0, margin: float = 0.35) -> jax.Array:
  """CircleSoftmax: circle loss (Sun et al., CVPR 2020, Eq. 6 with Eq. 8) with class centres as proxies.

  With s_p the target cosine and s_n the others, Eq. 8 sets
  alpha_p = [1 + m - s_p]_+, alpha_n = [s_n + m]_+, Delta_p = 1 - m and
  Delta_n = m; the logits are s * alpha_p * (s_p - Delta_p) on the target and
  s * alpha_n * (s_n - Delta_n) elsewhere. The alphas are weights, not part
  of the similarity: the paper (Sec. 3.2) and FastReID's `CircleSoftmax`
  stop their gradient, so we do too.
  """
  alpha_p = jax.nn.relu(1.0 + margin - jax.lax.stop_gradient(cos))
  alpha_n = jax.nn.relu(jax.lax.stop_gradient(cos) + margin)
  mask = _target_mask(labels, cos.shape[-1])
  positive = alpha_p * (cos - (1.0 - margin))
  negative = alpha_n * (cos - margin)
  return scale * jnp.where(mask, positive, negative)
