"""Query expansion: replace each query feature by a blend of it and its best gallery matches.

Both variants work on L2-normalised features and cosine similarity, and
return new L2-normalised query features (Q, D) as float32 numpy; the gallery
is left as it is. Neighbours are the gallery items of highest cosine
similarity, ties going to the lower gallery index (``jax.lax.top_k``'s rule),
so results do not depend on the sort. Queries are done in fixed-size chunks
(one compiled program, padded last chunk), as in distance.py.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

_EPS = 1e-12  # norms below this count as this: a zero feature stays finite


def query_expansion(qf, gf, top_m: int, chunk_size: int = 1024) -> np.ndarray:
  """Plain (average) query expansion.

  With q and g_i L2-normalised and g_(1..m) the query's top_m gallery items
  by cosine similarity:  q' = normalise(q + g_(1) + ... + g_(m)), i.e. the
  re-normalised mean of the query and its m best matches, each counted once.
  ``top_m=0`` returns the normalised queries.
  """
  return _expand(qf, gf, num=top_m, alpha=0.0, chunk_size=chunk_size)


def alpha_query_expansion(qf, gf, k: int = 5, alpha: float = 3.0,
                          chunk_size: int = 1024) -> np.ndarray:
  """alpha-weighted query expansion (Radenovic et al.) as FastReID describes it.

  The k nearest items *including the query itself* are the query plus its
  top k-1 gallery items; each is weighted by its cosine similarity to the
  query raised to alpha (the query's own weight is 1^alpha = 1):
    q' = normalise(q + sum_{i<k} max(cos(q, g_(i)), 0)^alpha * g_(i)).
  Similarities are clamped at 0 so that a non-integer alpha stays defined
  and an anti-correlated item never pulls the query away (with real
  features the top matches are positive and the clamp does nothing).
  """
  if k < 1:
    raise ValueError(f"k counts the query itself and must be >= 1, got {k}")
  return _expand(qf, gf, num=k - 1, alpha=float(alpha), chunk_size=chunk_size)


def _expand(qf, gf, num: int, alpha: float, chunk_size: int):
  """normalise(q + sum over the top ``num`` gallery items of w * g); w = 1 if alpha == 0."""
  qf = jnp.asarray(qf, jnp.float32)
  gf = jnp.asarray(gf, jnp.float32)
  if qf.ndim != 2 or gf.ndim != 2 or qf.shape[1] != gf.shape[1]:
    raise ValueError(f"expected features (Q, D) and (G, D) with the same D, "
                     f"got {qf.shape} and {gf.shape}")
  if num < 0 or num > gf.shape[0]:
    raise ValueError(f"cannot take {num} neighbours from a gallery of {gf.shape[0]}")
  num_q = qf.shape[0]
  out = np.empty(qf.shape, np.float32)
  if num_q == 0:
    return out
  chunk = min(chunk_size, num_q)
  padded = -(-num_q // chunk) * chunk
  qf = jnp.pad(qf, ((0, padded - num_q), (0, 0)))
  gallery = _normalise(gf)
  for start in range(0, num_q, chunk):
    block = _expand_block(qf, start, gallery, num=num, alpha=alpha, chunk=chunk)
    stop = min(start + chunk, num_q)
    out[start:stop] = np.asarray(block)[:stop - start]
  return out


def _normalise(x):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), _EPS)


@functools.partial(jax.jit, static_argnames=("num", "alpha", "chunk"))
def _expand_block(qf, start, gallery, num: int, alpha: float, chunk: int):
  q = _normalise(jax.lax.dynamic_slice_in_dim(qf, start, chunk, axis=0))
  if num == 0:
    return q
  sims = jnp.matmul(q, gallery.T, precision=jax.lax.Precision.HIGHEST)
  top_sims, top_idx = jax.lax.top_k(sims, num)  # ties: lower gallery index first
  # alpha == 0 is plain QE: weight 1 whatever the sign (as max(cos, 0)**0 is too).
  weights = jnp.ones_like(top_sims) if alpha == 0 else jnp.maximum(top_sims, 0.0) ** alpha
  expanded = q + jnp.einsum("qk,qkd->qd", weights, gallery[top_idx],
                            precision=jax.lax.Precision.HIGHEST)
  return _normalise(expanded)
