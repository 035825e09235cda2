"""CUHK03's original single-shot CMC (Li et al., 2014), offered as an option.

The CUHK03 protocol scores each query against a gallery holding ONE image per
identity: after the usual removal (same pid and same camera), one image of
every remaining gallery identity is drawn at random, the CMC of that reduced
gallery is taken, and the curve is averaged over `repeats` draws. mAP is not
defined by that protocol; like torchreid and FastReID we report the mAP of
the full (multi-shot) ranking alongside.
"""
from __future__ import annotations

import numpy as np

from jreid.evaluation.metrics import _stable_argsort_rows, evaluate_rank


def single_shot_first_hit(ranked_pids: np.ndarray, query_pid: int, rng: np.random.Generator,
                          repeats: int) -> np.ndarray:
  """1-based rank of the first correct match after each random one-per-identity draw.

  `ranked_pids` is the kept gallery in ranked order. Drawing one image per pid
  uniformly is the same as giving every image a random key and keeping, per
  pid, the image with the smallest key.
  """
  unique, group = np.unique(ranked_pids, return_inverse=True)
  true_group = np.searchsorted(unique, query_pid)
  first = np.empty(repeats, np.int64)
  for r in range(repeats):
    keys = rng.random(len(ranked_pids))
    # Per group, the position (in ranked order) of its smallest key.
    order = np.lexsort((keys, group))
    starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])
    chosen_position = order[starts]  # one ranked position per group, groups in sorted pid order
    # Rank of the true identity's chosen image among all chosen images.
    first[r] = 1 + np.sum(chosen_position < chosen_position[true_group])
  return first


def evaluate_single_shot(distmat, q_pids, g_pids, q_camids, g_camids, *, max_rank: int = 50,
                         repeats: int = 10, seed: int = 0) -> dict:
  """CUHK03 single-shot CMC averaged over `repeats` draws, plus the multi-shot mAP/mINP.

  Returns the same keys as `evaluate_rank` (fractions).
  """
  full = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank)
  distmat = np.asarray(distmat)
  q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
  q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
  rng = np.random.default_rng(seed)
  hits = np.zeros(max_rank + 1)
  num_valid = 0
  for q in range(len(q_pids)):
    order = _stable_argsort_rows(distmat[q:q + 1])[0]
    kept = order[~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))]
    ranked_pids = g_pids[kept]
    if not np.any(ranked_pids == q_pids[q]):
      continue
    num_valid += 1
    first = single_shot_first_hit(ranked_pids, q_pids[q], rng, repeats)
    hits += np.bincount(np.minimum(first, max_rank + 1) - 1, minlength=max_rank + 1) / repeats
  cmc = np.cumsum(hits[:max_rank]) / num_valid
  return {**full, "cmc": cmc}
