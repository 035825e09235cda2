"""roc / tpr_at_fpr against brute force over all pairs and all thresholds."""
import numpy as np
import pytest

from jreid.evaluation import roc, tpr_at_fpr


def brute_force_roc(distmat, q_pids, g_pids, q_camids, g_camids):
  pairs = []  # (distance, is_positive)
  for i in range(distmat.shape[0]):
    for j in range(distmat.shape[1]):
      if q_pids[i] == g_pids[j] and q_camids[i] == g_camids[j]:
        continue
      pairs.append((float(distmat[i, j]), q_pids[i] == g_pids[j]))
  num_pos = sum(p for _, p in pairs)
  num_neg = len(pairs) - num_pos
  points = [(0.0, 0.0, -np.inf)]
  for t in sorted({d for d, _ in pairs}):
    tp = sum(1 for d, p in pairs if p and d <= t)
    fp = sum(1 for d, p in pairs if not p and d <= t)
    points.append((fp / num_neg, tp / num_pos, t))
  return [np.array(c) for c in zip(*points)]


def random_case(seed, quantised):
  rng = np.random.default_rng(seed)
  num_q, num_g = int(rng.integers(2, 12)), int(rng.integers(5, 40))
  q_pids, g_pids = rng.integers(1, 5, num_q), rng.integers(0, 5, num_g)
  q_cams, g_cams = rng.integers(0, 3, num_q), rng.integers(0, 3, num_g)
  dist = rng.uniform(0, 2, (num_q, num_g)).astype(np.float32)
  if quantised:  # many ties: one threshold accepts several pairs at once
    dist = np.round(dist * 4) / 4
  return dist, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("quantised", [False, True])
def test_roc_matches_brute_force(seed, quantised):
  case = random_case(seed, quantised)
  fpr, tpr, thr = roc(*case)
  ref_fpr, ref_tpr, ref_thr = brute_force_roc(*case)
  np.testing.assert_array_equal(thr, ref_thr)
  np.testing.assert_allclose(fpr, ref_fpr, rtol=0, atol=1e-12)
  np.testing.assert_allclose(tpr, ref_tpr, rtol=0, atol=1e-12)
  assert fpr[-1] == 1 and tpr[-1] == 1


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("quantised", [False, True])
def test_tpr_at_fpr_is_best_tpr_within_target(seed, quantised):
  case = random_case(seed, quantised)
  ref_fpr, ref_tpr, _ = brute_force_roc(*case)
  targets = (0.0, 1e-2, 0.05, 0.1, 0.3, 1.0) + tuple(ref_fpr[1:4])  # also exactly on points
  got = tpr_at_fpr(*case, fprs=targets)
  for f in targets:
    assert got[f] == pytest.approx(max(t for x, t in zip(ref_fpr, ref_tpr) if x <= f), abs=1e-12)


def test_hand_computed():
  # One query (pid 1, cam 0); gallery: same pid other cam (positive), same pid
  # same cam (removed), and two negatives.
  dist = np.array([[0.5, 0.1, 0.2, 0.9]])
  fpr, tpr, thr = roc(dist, [1], [1, 1, 2, 3], [0], [1, 0, 0, 0])
  np.testing.assert_array_equal(thr, [-np.inf, 0.2, 0.5, 0.9])
  np.testing.assert_array_equal(fpr, [0, 0.5, 0.5, 1])
  np.testing.assert_array_equal(tpr, [0, 0, 1, 1])
  assert tpr_at_fpr(dist, [1], [1, 1, 2, 3], [0], [1, 0, 0, 0], fprs=(0.1, 0.5)) == \
      {0.1: 0.0, 0.5: 1.0}


def test_needs_both_classes():
  with pytest.raises(ValueError, match="positive and negative"):
    roc(np.zeros((1, 2)), [1], [2, 3], [0], [1, 1])
