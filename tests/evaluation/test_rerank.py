"""re_ranking against a literal plain-numpy transcription of the published algorithm."""
import numpy as np
import pytest

from jreid.evaluation import compute_distance, re_ranking


def reference_re_ranking(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
  """Zhong et al. (CVPR 2017), step by step on dense matrices, one point at a time."""
  original_dist = np.concatenate([np.concatenate([q_q_dist, q_g_dist], axis=1),
                                  np.concatenate([q_g_dist.T, g_g_dist], axis=1)], axis=0)
  original_dist = np.power(original_dist, 2).astype(np.float32)
  original_dist = np.transpose(1. * original_dist / np.max(original_dist, axis=0))
  v = np.zeros_like(original_dist, dtype=np.float32)
  initial_rank = np.argsort(original_dist).astype(np.int32)
  query_num = q_g_dist.shape[0]
  all_num = original_dist.shape[0]
  half = int(np.around(k1 / 2.)) + 1

  def reciprocal(i, k):
    forward = initial_rank[i, :k]
    backward = initial_rank[forward, :k]
    return forward[np.where(backward == i)[0]]

  for i in range(all_num):
    k_reciprocal = reciprocal(i, k1 + 1)
    expansion = k_reciprocal
    for candidate in k_reciprocal:
      candidate_set = reciprocal(candidate, half)
      if len(np.intersect1d(candidate_set, k_reciprocal)) > 2. / 3 * len(candidate_set):
        expansion = np.append(expansion, candidate_set)
    expansion = np.unique(expansion)
    weight = np.exp(-original_dist[i, expansion])
    v[i, expansion] = 1. * weight / np.sum(weight)
  original_dist = original_dist[:query_num]
  if k2 != 1:
    v_qe = np.zeros_like(v, dtype=np.float32)
    for i in range(all_num):
      v_qe[i] = np.mean(v[initial_rank[i, :k2], :], axis=0)
    v = v_qe
  inv_index = [np.where(v[:, i] != 0)[0] for i in range(all_num)]
  jaccard_dist = np.zeros_like(original_dist, dtype=np.float32)
  for i in range(query_num):
    temp_min = np.zeros((1, all_num), dtype=np.float32)
    for j in np.where(v[i] != 0)[0]:
      rows = inv_index[j]
      temp_min[0, rows] = temp_min[0, rows] + np.minimum(v[i, j], v[rows, j])
    jaccard_dist[i] = 1 - temp_min / (2. - temp_min)
  final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
  return final_dist[:query_num, query_num:]


def euclidean(a, b):
  """float64 distances rounded to float32: continuous, so no tied ranks."""
  return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).astype(np.float32)


def random_blocks(seed, num_q, num_g, dim=8, clusters=0):
  rng = np.random.default_rng(seed)
  if clusters:  # identity-like structure so that reciprocal sets are large
    centres = rng.standard_normal((clusters, dim)) * 3
    qf = centres[rng.integers(0, clusters, num_q)] + rng.standard_normal((num_q, dim))
    gf = centres[rng.integers(0, clusters, num_g)] + rng.standard_normal((num_g, dim))
  else:
    qf, gf = rng.standard_normal((num_q, dim)), rng.standard_normal((num_g, dim))
  return euclidean(qf, gf), euclidean(qf, qf), euclidean(gf, gf)


@pytest.mark.parametrize("seed,num_q,num_g,k1,k2,lam,clusters", [
    (0, 5, 40, 20, 6, 0.3, 0),
    (1, 12, 90, 20, 6, 0.3, 6),
    (2, 3, 10, 20, 6, 0.3, 0),     # Q+G < k1+1: every row is one neighbourhood
    (3, 1, 1, 20, 6, 0.3, 0),
    (4, 20, 60, 7, 3, 0.5, 4),     # round(7/2) = 4 (half to even)
    (5, 15, 70, 5, 1, 0.0, 5),     # round(5/2) = 2; no query expansion; jaccard only
    (6, 30, 120, 12, 8, 0.8, 10),
    (7, 8, 50, 1, 2, 0.3, 3),
    (8, 40, 100, 20, 25, 0.3, 8),  # k2 > k1+1
])
def test_matches_reference(seed, num_q, num_g, k1, k2, lam, clusters):
  q_g, q_q, g_g = random_blocks(seed, num_q, num_g, clusters=clusters)
  expected = reference_re_ranking(q_g, q_q, g_g, k1, k2, lam)
  got = re_ranking(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
  assert got.shape == (num_q, num_g) and got.dtype == np.float32
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_asymmetric_blocks_follow_the_published_transpose():
  """Distances that are not symmetric: rows are normalised as the code does."""
  rng = np.random.default_rng(11)
  q_g, q_q, g_g = (rng.uniform(0.1, 2.0, shape).astype(np.float32)
                   for shape in ((6, 30), (6, 6), (30, 30)))
  np.fill_diagonal(q_q, 0)
  np.fill_diagonal(g_g, 0)
  np.testing.assert_allclose(re_ranking(q_g, q_q, g_g, k1=6, k2=3),
                             reference_re_ranking(q_g, q_q, g_g, 6, 3), rtol=0, atol=1e-5)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_compute_distance_inputs(metric, monkeypatch):
  """Distances from compute_distance, with chunks smaller than the problem."""
  import jreid.evaluation.rerank as rerank
  monkeypatch.setattr(rerank, "_ROW_CHUNK", 16)
  monkeypatch.setattr(rerank, "_RECIP_CHUNK", 20)
  monkeypatch.setattr(rerank, "_ENTRY_CHUNK", 300)
  rng = np.random.default_rng(3)
  centres = rng.standard_normal((8, 32))
  qf = centres[rng.integers(0, 8, 25)] + 0.5 * rng.standard_normal((25, 32))
  gf = centres[rng.integers(0, 8, 80)] + 0.5 * rng.standard_normal((80, 32))
  blocks = [compute_distance(a, b, metric) for a, b in ((qf, gf), (qf, qf), (gf, gf))]
  np.testing.assert_allclose(re_ranking(*blocks, k1=10, k2=4),
                             reference_re_ranking(*blocks, 10, 4), rtol=0, atol=1e-5)


def test_rejects_mismatched_blocks():
  q_g, q_q, g_g = random_blocks(0, 4, 9)
  with pytest.raises(ValueError, match="expected q_q"):
    re_ranking(q_g, q_q[:3, :3], g_g)
