import numpy as np

from jreid.evaluation import evaluate_rank
from jreid.evaluation.single_shot import evaluate_single_shot


def test_one_image_per_identity_equals_multi_shot():
  """With one gallery image per identity, every draw is the whole gallery."""
  rng = np.random.default_rng(0)
  g_pids = np.arange(30)
  q_pids = rng.integers(0, 30, 12)
  distmat = rng.random((12, 30)).astype(np.float32)
  q_cams, g_cams = np.zeros(12, int), np.ones(30, int)
  single = evaluate_single_shot(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=10, repeats=3)
  multi = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=10)
  assert np.allclose(single["cmc"], multi["cmc"]) and single["mAP"] == multi["mAP"]


def test_hand_computed_expectation():
  """Ranked gallery: true (A), wrong (B), true (A). A draw keeps one A image:
  the first one (probability 1/2) -> rank 1; the third -> B comes first -> rank 2.
  Expected CMC: rank-1 = 0.5, rank-2 = 1."""
  distmat = np.array([[0.1, 0.2, 0.3]], np.float32)
  g_pids, g_cams = np.array([1, 2, 1]), np.array([1, 1, 1])
  result = evaluate_single_shot(distmat, np.array([1]), g_pids, np.array([0]), g_cams,
                                max_rank=3, repeats=4000, seed=1)
  assert abs(result["cmc"][0] - 0.5) < 0.03
  assert np.allclose(result["cmc"][1:], 1.0)


def test_same_camera_matches_are_removed_before_drawing():
  # The only same-pid image in the query's camera is removed, leaving one in another camera.
  distmat = np.array([[0.1, 0.2, 0.3]], np.float32)
  g_pids, g_cams = np.array([1, 2, 1]), np.array([0, 1, 1])
  result = evaluate_single_shot(distmat, np.array([1]), g_pids, np.array([0]), g_cams,
                                max_rank=2, repeats=50)
  assert np.allclose(result["cmc"], [0.0, 1.0])
