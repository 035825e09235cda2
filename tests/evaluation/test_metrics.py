"""evaluate_rank against a literal one-query-at-a-time reference."""
import re

import jax.numpy as jnp
import numpy as np
import pytest

from jreid.evaluation import evaluate_rank
from jreid.evaluation.metrics import explain_no_valid_query, valid_queries


def reference_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
  """The protocol as written, one query at a time; None when no query is valid."""
  cmcs, aps, inps = [], [], []
  for i in range(distmat.shape[0]):
    order = np.argsort(distmat[i], kind="stable")  # ties: lower gallery index first
    pids, cams = g_pids[order], g_camids[order]
    removed = (pids == q_pids[i]) & (cams == q_camids[i])
    rel = (pids == q_pids[i])[~removed].astype(np.float64)
    if rel.sum() == 0:
      continue
    cmc = np.minimum(np.cumsum(rel), 1.0)
    if cmc.size < max_rank:
      cmc = np.concatenate([cmc, np.full(max_rank - cmc.size, cmc[-1])])
    cmcs.append(cmc[:max_rank])
    precision_at_k = np.cumsum(rel) / np.arange(1, rel.size + 1)
    aps.append((precision_at_k * rel).sum() / rel.sum())
    hardest_rank = np.nonzero(rel)[0][-1] + 1
    inps.append(rel.sum() / hardest_rank)
  if not cmcs:
    return None
  return {"cmc": np.mean(cmcs, axis=0), "mAP": np.mean(aps), "mINP": np.mean(inps),
          "num_valid": len(cmcs)}


def random_case(seed):
  """Small, collision-heavy problems: few ids and cameras, often tied distances."""
  rng = np.random.default_rng(seed)
  num_q, num_g = int(rng.integers(1, 25)), int(rng.integers(1, 70))
  num_ids, num_cams = int(rng.integers(1, 8)), int(rng.integers(2, 5))
  q_pids = rng.integers(1, num_ids + 1, num_q)
  g_pids = rng.integers(0, num_ids + 1, num_g)  # 0: distractors, never a query id
  q_camids, g_camids = rng.integers(0, num_cams, num_q), rng.integers(0, num_cams, num_g)
  kind = seed % 4
  if kind == 0:  # integer-valued: many ties, float32 fast path
    distmat = rng.integers(0, 4, (num_q, num_g)).astype(np.float32)
  elif kind == 1:  # same, through the float64 / stable-argsort path
    distmat = rng.integers(0, 4, (num_q, num_g)).astype(np.float64)
  elif kind == 2:  # signed values, both zeros and infinities
    distmat = rng.choice(np.array([-np.inf, -1.5, -0.0, 0.0, 0.25, 2.0, np.inf], np.float32),
                         (num_q, num_g))
  else:
    distmat = rng.standard_normal((num_q, num_g)).astype(np.float32)
  max_rank = int(rng.choice([1, 5, 50, 100]))
  return distmat, q_pids, g_pids, q_camids, g_camids, max_rank


def assert_same(result, expected):
  assert result["num_valid"] == expected["num_valid"]
  assert result["cmc"].shape == expected["cmc"].shape
  np.testing.assert_allclose(result["cmc"], expected["cmc"], rtol=0, atol=1e-12)
  assert result["mAP"] == pytest.approx(expected["mAP"], abs=1e-12)
  assert result["mINP"] == pytest.approx(expected["mINP"], abs=1e-12)


@pytest.mark.parametrize("seed", range(80))
def test_matches_reference_on_random_cases(seed):
  args = random_case(seed)
  expected = reference_rank(*args)
  chunk_size = [None, 1, 3][seed % 3]
  if expected is None:
    with pytest.raises(ValueError, match="no query has a correct match"):
      evaluate_rank(*args[:5], max_rank=args[5], chunk_size=chunk_size)
  else:
    assert_same(evaluate_rank(*args[:5], max_rank=args[5], chunk_size=chunk_size), expected)


def test_random_cases_cover_every_situation():
  """Guards the generator: the cases above must include what they claim to test."""
  seen = set()
  for seed in range(80):
    distmat, q_pids, g_pids, q_camids, g_camids, max_rank = random_case(seed)
    if distmat.shape[1] < max_rank:
      seen.add("small gallery")
    if (g_pids == 0).any():
      seen.add("distractors")
    if reference_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank) is None:
      seen.add("no valid query")
    for i in range(len(q_pids)):
      same = g_pids == q_pids[i]
      if same.any() and (g_camids[same] == q_camids[i]).all():
        seen.add("query without valid match")
      if (same & (g_camids == q_camids[i])).any() and (same & (g_camids != q_camids[i])).any():
        seen.add("removed items ahead of matches")
      if len(np.unique(distmat[i])) < distmat.shape[1]:
        seen.add("ties")
  assert seen == {"small gallery", "distractors", "no valid query", "query without valid match",
                  "removed items ahead of matches", "ties"}


def test_hand_computed_case():
  # Gallery (pid, cam):  g0 (1,0)  g1 (2,1)  g2 (1,1)  g3 (0,2)  g4 (1,2)  g5 (3,0)
  # q0 = (1, cam 0): g0 is the same person in the same camera -> removed.
  #   Distances 0.1 0.2 0.2 0.3 0.4 0.5; g1, g2 tie and g1 ranks first (lower index).
  #   Kept ranking: g1 x, g2 v, g3 x (distractor), g4 v, g5 x.
  #   CMC 0 1 1 1 1 (then padded with 1); AP = (1/2 + 2/4) / 2 = 0.5;
  #   mINP = 2 matches / hardest rank 4 = 0.5.
  # q1 = (2, cam 1): its only pid-2 item g1 is in cam 1 -> no valid match, skipped.
  # q2 = (3, cam 1): distances decrease with index, g5 ranks first -> CMC all 1,
  #   AP 1, mINP 1.
  # Averages over the 2 valid queries: CMC 0.5 1 1 ..., mAP 0.75, mINP 0.75.
  distmat = np.array([[0.1, 0.2, 0.2, 0.3, 0.4, 0.5],
                      [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
                      [0.5, 0.4, 0.3, 0.2, 0.1, 0.0]], np.float32)
  g_pids, g_camids = np.array([1, 2, 1, 0, 1, 3]), np.array([0, 1, 1, 2, 2, 0])
  q_pids, q_camids = np.array([1, 2, 3]), np.array([0, 1, 1])
  result = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=8)
  np.testing.assert_allclose(result["cmc"], [0.5, 1, 1, 1, 1, 1, 1, 1])
  assert result["mAP"] == pytest.approx(0.75)
  assert result["mINP"] == pytest.approx(0.75)
  assert result["num_valid"] == 2
  assert isinstance(result["mAP"], float) and isinstance(result["mINP"], float)
  assert isinstance(result["num_valid"], int)
  assert result["cmc"].dtype == np.float64 and result["cmc"].shape == (8,)


def test_all_tied_distances_rank_by_gallery_index():
  g_pids = np.array([5, 7, 7, 7])
  result = evaluate_rank(np.zeros((1, 4)), np.array([7]), g_pids, np.array([0]),
                         np.array([1, 1, 1, 1]), max_rank=3)
  np.testing.assert_allclose(result["cmc"], [0.0, 1.0, 1.0])  # g0 (pid 5) comes first
  assert result["mAP"] == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3)
  assert result["mINP"] == pytest.approx(3 / 4)


def test_accepts_jax_arrays_and_large_chunks():
  args = random_case(4)
  expected = evaluate_rank(*args[:5], max_rank=args[5])
  as_jax = [jnp.asarray(a) for a in args[:5]]
  assert_same(evaluate_rank(*as_jax, max_rank=args[5], chunk_size=1000), expected)


def test_bad_inputs_raise():
  d = np.zeros((2, 3))
  pq, pg = np.array([1, 2]), np.array([1, 2, 3])
  with pytest.raises(ValueError, match="2-D"):
    evaluate_rank(np.zeros(3), pq, pg, pq, pg)
  with pytest.raises(ValueError, match="q_pids has shape"):
    evaluate_rank(d, np.array([1, 2, 3]), pg, pq, pg)
  with pytest.raises(ValueError, match="q_camids has shape"):
    evaluate_rank(d, pq, pg, np.array([0]), pg)
  with pytest.raises(ValueError, match="g_pids has shape"):
    evaluate_rank(d, pq, pq, pq, pg)
  with pytest.raises(ValueError, match="g_camids has shape"):
    evaluate_rank(d, pq, pg, pq, pg[:, None])
  with pytest.raises(ValueError, match="max_rank"):
    evaluate_rank(d, pq, pg, pq, pg, max_rank=0)
  with pytest.raises(ValueError, match="NaN"):
    evaluate_rank(np.full((2, 3), np.nan, np.float32), pq, pg, pq, pg)
  with pytest.raises(ValueError, match="no query has a correct match"):
    evaluate_rank(d, pq, np.array([3, 4, 5]), pq, pg)


# --- Degenerate splits: which queries count, and why none does ---------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_valid_queries_match_the_ranking_brute_force(seed):
  rng = np.random.default_rng(seed)
  q_pids, q_cams = rng.integers(0, 8, 40), rng.integers(0, 3, 40)
  g_pids, g_cams = rng.integers(2, 10, 30), rng.integers(0, 3, 30)
  expected = [any(gp == qp and gc != qc for gp, gc in zip(g_pids, g_cams))
              for qp, qc in zip(q_pids, q_cams)]
  valid = valid_queries(q_pids, g_pids, q_cams, g_cams)
  assert valid.tolist() == expected and 0 < sum(expected) < 40
  metrics = evaluate_rank(rng.random((40, 30)), q_pids, g_pids, q_cams, g_cams, max_rank=5)
  assert metrics["num_valid"] == sum(expected)


def test_skipped_queries_do_not_count():
  """Of three queries only the first has a match left; the averages are its numbers alone."""
  distmat = np.array([[0.2, 0.1, 0.9], [0.5, 0.6, 0.1], [0.3, 0.2, 0.1]])
  g_pids, g_cams = np.array([1, 2, 2]), np.array([1, 0, 1])
  # Query 1's id 3 is not in the gallery; query 2 (id 1, camera 1) has its one match removed.
  q_pids, q_cams = np.array([1, 3, 1]), np.array([0, 0, 1])
  metrics = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=3)
  # Query 0 ranks gallery 1 (id 2), then its match gallery 0: first hit at rank 2, AP 1/2.
  assert metrics["num_valid"] == 1 and metrics["mAP"] == 0.5 and metrics["mINP"] == 0.5
  assert metrics["cmc"].tolist() == [0.0, 1.0, 1.0]


@pytest.mark.parametrize("q_pids,q_cams,g_pids,g_cams,why", [
    ([1, 2], [0, 0], [1, 2, 2], [0, 0, 0], "every query and gallery image has camera 0"),
    ([7, 8], [0, 1], [1, 2, 2], [0, 1, 0], r"none of the 2 queries' ids \(e.g. 7, 8\) appears"),
    ([1, 7], [0, 1], [1, 2], [0, 1], "1 of the 2 queries have an id absent from the gallery and "
     r"the others find their id in the gallery only under their own camera \(camera 0, 0-based\)"),
    ([1, 2], [3, 5], [1, 2, 9], [3, 5, 4], r"all 2 queries find their id in the gallery only under "
     r"their own camera \(cameras 3, 5, 0-based\)"),
])
def test_no_valid_query_says_why(q_pids, q_cams, g_pids, g_cams, why):
  arrays = [np.array(a) for a in (q_pids, g_pids, q_cams, g_cams)]
  assert not valid_queries(*arrays).any()
  assert re.search(why, explain_no_valid_query(*arrays))
  with pytest.raises(ValueError, match="CMC/mAP/mINP are undefined: " + why):
    evaluate_rank(np.zeros((len(q_pids), len(g_pids))), *arrays)


def test_valid_queries_of_empty_sides():
  assert valid_queries([1, 2], [], [0, 0], []).tolist() == [False, False]
  assert valid_queries([], [1], [], [0]).tolist() == []
