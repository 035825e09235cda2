"""compute_distance against float64 numpy brute force."""
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.evaluation import compute_distance
from jreid.evaluation import distance


def brute_force(qf, gf, metric):
  qf, gf = qf.astype(np.float64), gf.astype(np.float64)
  out = np.zeros((len(qf), len(gf)))
  for i, q in enumerate(qf):
    for j, g in enumerate(gf):
      if metric == "cosine":
        out[i, j] = 1 - q @ g / (np.linalg.norm(q) * np.linalg.norm(g))
      else:
        out[i, j] = np.sqrt(((q - g) ** 2).sum())
  return out


@pytest.fixture(scope="module")
def features():
  rng = np.random.default_rng(0)
  return rng.standard_normal((13, 8)).astype(np.float32), rng.standard_normal((17, 8)) * 3


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("chunk_size", [1, 4, 13, 100])  # 4 does not divide 13
def test_matches_brute_force(features, metric, chunk_size):
  qf, gf = features
  result = compute_distance(qf, gf, metric=metric, chunk_size=chunk_size)
  assert isinstance(result, np.ndarray) and result.dtype == np.float32
  assert result.shape == (13, 17)
  np.testing.assert_allclose(result, brute_force(qf, gf, metric), rtol=1e-5, atol=1e-6)


def test_one_compilation_for_all_chunks(features):
  qf, gf = features
  before = distance._distance_block._cache_size()
  compute_distance(qf, gf[:5], metric="euclidean", chunk_size=4)  # 4 chunks, last padded
  assert distance._distance_block._cache_size() == before + 1


def test_degenerate_features():
  x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], np.float32)
  euclid = compute_distance(x, x, metric="euclidean")
  assert np.all(np.isfinite(euclid)) and np.all(np.diag(euclid) <= 1e-3)
  cosine = compute_distance(x, x)
  assert cosine[0, 0] == pytest.approx(0.0, abs=1e-6)
  np.testing.assert_allclose(cosine[1], [1.0, 1.0])  # a zero feature: cos 0, not NaN


def test_jax_inputs(features):
  qf, gf = features
  result = compute_distance(jnp.asarray(qf), jnp.asarray(gf, jnp.float32), chunk_size=5)
  np.testing.assert_allclose(result, brute_force(qf, gf, "cosine"), rtol=1e-5, atol=1e-6)


def test_bad_arguments_raise():
  x = np.ones((2, 3), np.float32)
  with pytest.raises(ValueError, match="cosine, euclidean"):
    compute_distance(x, x, metric="manhattan")
  with pytest.raises(ValueError, match="same D"):
    compute_distance(x, np.ones((2, 4)))
  with pytest.raises(ValueError, match="chunk_size"):
    compute_distance(x, x, chunk_size=0)
