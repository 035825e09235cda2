"""ROC of query-gallery verification under the ReID removal rule.

Every (query, gallery) pair is a verification trial: positive when the pids
match, negative otherwise, and the distance is the score (smaller = more
likely the same person). Pairs of the same pid *and* the same camera are
removed first, as in CMC/mAP (see metrics.py): they are not re-identification.

A threshold t accepts the pairs with distance <= t. Sorting the positive and
the negative distances once and counting with ``searchsorted`` gives the
whole curve at every distinct distance, without a per-threshold pass.
"""
from __future__ import annotations

import numpy as np

DEFAULT_FPRS = (1e-4, 1e-3, 1e-2)


def _scores(distmat, q_pids, g_pids, q_camids, g_camids):
  """Sorted distances of the positive and the negative valid pairs."""
  distmat = np.asarray(distmat)
  q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
  q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
  if distmat.ndim != 2 or distmat.shape != (q_pids.size, g_pids.size) \
      or q_camids.shape != q_pids.shape or g_camids.shape != g_pids.shape:
    raise ValueError(f"distmat {distmat.shape} does not match q_pids {q_pids.shape}, "
                     f"g_pids {g_pids.shape}, q_camids {q_camids.shape}, "
                     f"g_camids {g_camids.shape}")
  if distmat.dtype.kind == "f" and np.isnan(distmat).any():
    raise ValueError("distmat contains NaN")
  same_pid = q_pids[:, None] == g_pids[None, :]
  removed = same_pid & (q_camids[:, None] == g_camids[None, :])
  pos = np.sort(distmat[same_pid & ~removed], kind="stable")
  neg = np.sort(distmat[~same_pid], kind="stable")
  if pos.size == 0 or neg.size == 0:
    raise ValueError(f"ROC needs positive and negative pairs, got {pos.size} positive and "
                     f"{neg.size} negative after removing same-pid same-camera pairs")
  return pos, neg


def roc(distmat, q_pids, g_pids, q_camids, g_camids):
  """False-positive rates, true-positive rates and their distance thresholds.

  Returns float64 arrays ``(fpr, tpr, thresholds)`` of equal length, by
  increasing threshold: ``thresholds[0] = -inf`` (nothing accepted, the (0, 0)
  point), then every distinct distance among the valid pairs; at threshold
  t, ``tpr = #{positives <= t} / #positives`` and the same for ``fpr``
  with negatives. Both rates are non-decreasing; the last point is (1, 1).

  Raises:
    ValueError: on mismatched shapes, NaN distances, or when no positive or
      no negative pair remains.
  """
  pos, neg = _scores(distmat, q_pids, g_pids, q_camids, g_camids)
  thresholds = np.unique(np.concatenate([pos, neg])).astype(np.float64)
  thresholds = np.concatenate([[-np.inf], thresholds])
  tpr = np.searchsorted(pos, thresholds, side="right") / pos.size
  fpr = np.searchsorted(neg, thresholds, side="right") / neg.size
  return fpr, tpr, thresholds


def tpr_at_fpr(distmat, q_pids, g_pids, q_camids, g_camids, fprs=DEFAULT_FPRS) -> dict:
  """TPR at each target FPR, read off the curve of ``roc``.

  The value for a target f is the largest TPR among the curve's points with
  FPR <= f, i.e. the TPR of the largest threshold that still keeps the
  false-positive rate within f. No interpolation between points: it is a
  rate some threshold actually achieves. The (0, 0) point makes it defined
  for every f >= 0 (0 when even the closest negative is too many).

  Returns ``{f: tpr}`` keyed by the given floats.
  """
  fpr, tpr, _ = roc(distmat, q_pids, g_pids, q_camids, g_camids)
  out = {}
  for target in fprs:
    if not 0 <= target <= 1:
      raise ValueError(f"target FPR must lie in [0, 1], got {target}")
    # fpr is non-decreasing: the last point with fpr <= target; tpr is
    # non-decreasing too, so that point holds the largest such TPR.
    last = np.searchsorted(fpr, target, side="right") - 1
    out[target] = float(tpr[last])
  return out
