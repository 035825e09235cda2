import numpy as np

from jreid.evaluation.dsr import dsr_distance


def _reference(query, gallery, lam):
  """Each location reconstructed by solving the ridge problem directly, pair by pair."""
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  query, gallery = unit(query.astype(np.float64)), unit(gallery.astype(np.float64))
  out = np.zeros((len(query), len(gallery)))
  for i, X in enumerate(query):
    for j, Y in enumerate(gallery):
      # min_w ||x - Y^T w||^2 + lam ||w||^2 as an augmented least-squares problem.
      A = np.vstack([Y.T, np.sqrt(lam) * np.eye(len(Y))])
      residuals = []
      for x in X:
        w = np.linalg.lstsq(A, np.concatenate([x, np.zeros(len(Y))]), rcond=None)[0]
        residuals.append(np.sum((x - Y.T @ w) ** 2))
      out[i, j] = np.mean(residuals)
  return out


def test_matches_direct_ridge_solutions():
  rng = np.random.default_rng(0)
  query, gallery = rng.normal(size=(5, 6, 16)), rng.normal(size=(7, 4, 16))
  got = dsr_distance(query, gallery, lam=0.1, query_chunk=2, gallery_chunk=3)
  assert np.allclose(got, _reference(query, gallery, 0.1), atol=1e-4)


def test_partial_query_is_reconstructed_by_its_full_image():
  """A query showing half of a gallery image's locations is explained by it almost exactly."""
  rng = np.random.default_rng(1)
  gallery = rng.normal(size=(4, 8, 32))
  query = gallery[2:3, :4] + 0.01 * rng.normal(size=(1, 4, 32))
  distances = dsr_distance(query, gallery, lam=1e-3)
  assert distances.argmin() == 2 and distances[0, 2] < 0.01 < distances[0, [0, 1, 3]].min()
