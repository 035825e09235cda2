"""Deep spatial reconstruction (DSR, He et al. CVPR 2018) distance for partial ReID.

A query's spatial features X (N locations x d) are reconstructed from a
gallery image's spatial features Y (M x d); the gallery image that explains
the query best is the closest, whatever the two crops' alignment or extent.
Each location is reconstructed as x_n ~ Y^T w_n with

    w_n = argmin ||x_n - Y^T w||^2 + lam ||w||^2 = (Y Y^T + lam I)^{-1} Y x_n,

and the distance is the mean squared residual over the query's locations.
The paper's sparse (l1) code has no closed form; the ridge (l2) code keeps
DSR a few batched matrix products on the device, and `lam` is exposed. The
residual is expanded so no N x d reconstruction is ever materialised:
||x - Y^T w||^2 = ||x||^2 - 2 c.w + w.(Y Y^T) w with c = Y x.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


@jax.jit
def _pair_block(query, gallery, lam):
  """(Qb, N, d) x (Gb, M, d) -> (Qb, Gb) mean squared reconstruction residual."""
  hi = jax.lax.Precision.HIGHEST
  gram = jnp.einsum("gmd,gkd->gmk", gallery, gallery, precision=hi)          # Y Y^T
  eye = jnp.eye(gram.shape[-1], dtype=gram.dtype)
  inverse = jnp.linalg.inv(gram + lam * eye)                                   # (Gb, M, M)
  codes_in = jnp.einsum("gmd,qnd->qgnm", gallery, query, precision=hi)         # c = Y x_n
  weights = jnp.einsum("gmk,qgnk->qgnm", inverse, codes_in, precision=hi)      # w_n
  fitted = jnp.einsum("gmk,qgnk->qgnm", gram, weights, precision=hi)           # Y Y^T w_n
  norms = jnp.sum(query * query, axis=-1)[:, None, :]                          # ||x_n||^2
  residual = (norms - 2 * jnp.sum(codes_in * weights, -1) + jnp.sum(weights * fitted, -1))
  return jnp.mean(residual, axis=-1)


def dsr_distance(query_maps, gallery_maps, *, lam: float = 1e-3, query_chunk: int = 32,
                 gallery_chunk: int = 64) -> np.ndarray:
  """DSR distances between spatial feature maps, (Q, N, d) and (G, M, d) -> (Q, G).

  Maps are flattened spatially (NHWC maps: reshape to (B, H*W, C)); features
  are L2-normalised per location first, so distances do not depend on scale.
  """
  normalise = lambda x: x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
  query = normalise(np.asarray(query_maps, np.float32))
  gallery = normalise(np.asarray(gallery_maps, np.float32))
  out = np.empty((len(query), len(gallery)), np.float32)
  for q in range(0, len(query), query_chunk):
    for g in range(0, len(gallery), gallery_chunk):
      block = _pair_block(query[q:q + query_chunk], gallery[g:g + gallery_chunk], lam)
      out[q:q + query_chunk, g:g + gallery_chunk] = np.asarray(block)
  return out
