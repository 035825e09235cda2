"""Query expansion on 2-d cases worked out by hand."""
import numpy as np
import pytest

from jreid.evaluation import alpha_query_expansion, query_expansion

S = np.sqrt(0.5)  # cos 45 degrees
# Query along x (given unnormalised: it is normalised first). Gallery, by
# cosine to the query: g1 = 45 degrees (0.7071), g2 = (3, 4)/5 (0.6),
# g0 = (0, 1) (0), g3 = -x (-1).
QUERY = np.array([[2.0, 0.0]])
GALLERY = np.array([[0.0, 1.0], [2.0, 2.0], [3.0, 4.0], [-1.0, 0.0]])


def unit(v):
  v = np.asarray(v, np.float64)
  return v / np.linalg.norm(v)


def test_plain_qe_top1_is_the_bisector():
  # (1, 0) + (S, S), normalised: the 22.5 degree direction.
  got = query_expansion(QUERY, GALLERY, top_m=1)
  np.testing.assert_allclose(got, [[np.cos(np.pi / 8), np.sin(np.pi / 8)]], atol=1e-6)


def test_plain_qe_top2():
  # (1, 0) + (S, S) + (0.6, 0.8); the mean's 1/3 goes away in the normalisation.
  got = query_expansion(QUERY, GALLERY, top_m=2)
  np.testing.assert_allclose(got, [unit([1 + S + 0.6, S + 0.8])], atol=1e-6)


def test_plain_qe_zero_neighbours_only_normalises():
  np.testing.assert_allclose(query_expansion(QUERY, GALLERY, top_m=0), [[1.0, 0.0]])


def test_alpha_qe_weights_cos_cubed():
  # k=3: the query (weight 1) and g1, g2 with weights S**3 and 0.6**3:
  # x = 1 + S**3 * S + 0.216 * 0.6 = 1 + 0.25 + 0.1296, y = 0.25 + 0.216 * 0.8.
  got = alpha_query_expansion(QUERY, GALLERY, k=3, alpha=3)
  np.testing.assert_allclose(got, [unit([1.3796, 0.4228])], atol=1e-6)


def test_alpha_qe_k1_is_the_query_and_alpha0_is_plain_qe():
  np.testing.assert_allclose(alpha_query_expansion(QUERY, GALLERY, k=1), [[1.0, 0.0]])
  np.testing.assert_allclose(alpha_query_expansion(QUERY, GALLERY, k=3, alpha=0),
                             query_expansion(QUERY, GALLERY, top_m=2), atol=1e-6)


def test_alpha_qe_ignores_anti_correlated_items():
  # The only gallery item is -x: cos -1, clamped to weight 0.
  got = alpha_query_expansion(QUERY, np.array([[-1.0, 0.1]]), k=2, alpha=3)
  np.testing.assert_allclose(got, [[1.0, 0.0]], atol=1e-7)


def test_several_queries_and_chunks():
  # Second query along y: its nearest is g0 = (0, 1) itself, then g2 (cos 0.8).
  queries = np.array([[2.0, 0.0], [0.0, 5.0], [1.0, 0.0]])
  got = query_expansion(queries, GALLERY, top_m=2, chunk_size=2)
  np.testing.assert_allclose(got[0], unit([1 + S + 0.6, S + 0.8]), atol=1e-6)
  np.testing.assert_allclose(got[1], unit([0 + 0 + 0.6, 1 + 1 + 0.8]), atol=1e-6)
  np.testing.assert_allclose(got[2], got[0], atol=1e-6)


def test_rejects_bad_arguments():
  with pytest.raises(ValueError, match="neighbours"):
    query_expansion(QUERY, GALLERY, top_m=5)
  with pytest.raises(ValueError, match="k counts the query"):
    alpha_query_expansion(QUERY, GALLERY, k=0)
  with pytest.raises(ValueError, match="same D"):
    query_expansion(QUERY, np.ones((3, 3)), top_m=1)
