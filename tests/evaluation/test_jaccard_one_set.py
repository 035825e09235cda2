"""jaccard_distance against a literal numpy transcription of cluster contrast's one-set Jaccard distance."""
import numpy as np
import pytest

from jreid.evaluation import jaccard_distance


def reference_jaccard(features, k1, k2):
  """Cluster contrast's compute_jaccard_distance, step by step on dense matrices.

  Unit features, d = 2 - 2 x.y; the neighbour search returns k1 columns
  (self first); first sets from those k1, expansion sets from the first
  round(k1/2)+1; V = exp(-d) / sum; query expansion over the first k2
  columns; jaccard = 1 - t / (2 - t), negatives set to 0; nothing mixed in.
  """
  x = features.astype(np.float64)
  x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
  n = x.shape[0]
  dist = 2 - 2 * (x @ x.T)
  initial_rank = np.argsort(dist, axis=1, kind="stable")[:, :k1]

  def reciprocal(i, k):
    forward = initial_rank[i, :k + 1]
    backward = initial_rank[forward, :k + 1]
    return forward[np.where(backward == i)[0]]

  full = [reciprocal(i, k1) for i in range(n)]
  half = [reciprocal(i, int(np.around(k1 / 2))) for i in range(n)]
  v = np.zeros((n, n), np.float32)
  for i in range(n):
    expansion = full[i]
    for candidate in full[i]:
      if len(np.intersect1d(half[candidate], full[i])) > 2 / 3 * len(half[candidate]):
        expansion = np.append(expansion, half[candidate])
    expansion = np.unique(expansion)
    weight = np.exp(-dist[i, expansion])
    v[i, expansion] = weight / weight.sum()
  if k2 != 1:
    v = np.stack([v[initial_rank[i, :k2]].mean(axis=0) for i in range(n)])
  out = np.zeros((n, n), np.float32)
  for i in range(n):
    t = np.zeros(n, np.float32)
    for l in np.where(v[i] != 0)[0]:
      rows = np.where(v[:, l] != 0)[0]
      t[rows] += np.minimum(v[i, l], v[rows, l])
    out[i] = 1 - t / (2 - t)
  out[out < 0] = 0
  return out


def clustered(seed, n, dim=16, clusters=6):
  """Identity-like groups so that the reciprocal sets and their expansions are large."""
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((clusters, dim)) * 2
  return (centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, dim))).astype(np.float32)


@pytest.mark.parametrize("seed,n,k1,k2", [
    (0, 40, 5, 1),
    (1, 60, 5, 3),
    (2, 80, 5, 6),    # k2 > k1: the release's rank has k1 columns, so 5 rows are averaged
    (3, 120, 20, 1),
    (4, 160, 20, 3),
    (5, 200, 20, 6),
    (6, 15, 20, 6),   # N < k1: every set is clipped to the whole set
])
def test_matches_reference(seed, n, k1, k2):
  features = clustered(seed, n)
  got = jaccard_distance(features, k1=k1, k2=k2)
  expected = reference_jaccard(features, k1, k2)
  assert got.shape == (n, n) and got.dtype == np.float32
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
  np.testing.assert_array_equal(got, got.T)  # t[i, j] sums the same mins in the same order
  np.testing.assert_allclose(np.diag(got), 0, atol=1e-6)
  assert got.min() >= 0 and got.max() <= 1
  assert (got < 1).sum() > n  # non-trivial: more than the diagonal is below 1


def test_small_chunks_match_reference(monkeypatch):
  import jreid.evaluation.rerank as rerank
  monkeypatch.setattr(rerank, "_ROW_CHUNK", 16)
  monkeypatch.setattr(rerank, "_RECIP_CHUNK", 20)
  monkeypatch.setattr(rerank, "_ENTRY_CHUNK", 300)
  features = clustered(7, 90)
  np.testing.assert_allclose(jaccard_distance(features, k1=20, k2=6),
                             reference_jaccard(features, 20, 6), rtol=0, atol=1e-5)


def test_scale_of_features_does_not_matter():
  features = clustered(8, 50)
  scales = np.random.default_rng(9).uniform(0.1, 10, (50, 1)).astype(np.float32)
  np.testing.assert_allclose(jaccard_distance(features * scales, k1=5, k2=3),
                             jaccard_distance(features, k1=5, k2=3), rtol=0, atol=1e-5)


def two_groups():
  """Groups of 4 around 3e0 and 3e1: x = (3 e_c + e_j) / sqrt(10), j = 2..5.

  Within a group d = 2 - 2 x.y = 0.2 for every pair; across, 1.8 or 2.0.
  With k1 = 4 each point's first set is exactly its group.
  """
  x = np.zeros((8, 8), np.float32)
  for g in range(2):
    for j in range(4):
      x[4 * g + j, g] = 3
      x[4 * g + j, 2 + j] = 1
  return x / np.sqrt(np.float32(10))


def test_two_groups_by_hand():
  """V[i] = w0 on self, w1 = e^-0.2 / (1 + 3 e^-0.2) on its 3 group mates, 0 elsewhere.

  k2 = 1: t = 4 w1 within a group (min(w0, w1) on i's and j's columns, w1 on
  the other two), 0 across: jaccard 1 - 4 w1 / (2 - 4 w1) = 0.0997 and 1.
  k2 = 4: every row of V becomes the group mean, 1/4 on each member: 0 and 1.
  """
  x = two_groups()
  same = np.kron(np.eye(2), np.ones((4, 4))).astype(bool)
  w1 = np.exp(-0.2) / (1 + 3 * np.exp(-0.2))
  within = 1 - 4 * w1 / (2 - 4 * w1)
  expected = np.where(same, within, 1.0)
  np.fill_diagonal(expected, 0)
  got = jaccard_distance(x, k1=4, k2=1)
  np.testing.assert_allclose(got, expected, atol=1e-6)
  assert abs(within - 0.0997) < 1e-4
  np.testing.assert_allclose(jaccard_distance(x, k1=4, k2=4), np.where(same, 0.0, 1.0), atol=1e-6)


def test_one_point_and_empty():
  np.testing.assert_array_equal(jaccard_distance(np.ones((1, 3)), k1=30, k2=6), [[0.0]])
  assert jaccard_distance(np.zeros((0, 3)), k1=30, k2=6).shape == (0, 0)


@pytest.mark.parametrize("features,k1,k2,match", [
    (np.ones(5), 30, 6, "expected features of shape"),
    (np.ones((5, 3)), 0, 6, "k1 and k2 must be >= 1"),
    (np.ones((5, 3)), 30, 0, "k1 and k2 must be >= 1"),
])
def test_rejects_bad_arguments(features, k1, k2, match):
  with pytest.raises(ValueError, match=match):
    jaccard_distance(features, k1=k1, k2=k2)
