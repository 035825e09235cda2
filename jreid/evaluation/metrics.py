"""CMC, mAP and mINP under the standard ReID protocol (Market-1501 / FastReID).

For each query, the gallery is ranked by ascending distance and the items with
the query's pid *and* camera are removed: they are the same person seen by
the same camera, which says nothing about re-identification. Every other
item keeps its place; an item of another pid (including Market's pid-0
distractors) is simply a wrong match.

Degenerate splits. A query left with no correct match (its id is not in the
gallery, or only under its own camera) is skipped: it counts in no average,
and `num_valid` says how many queries did count, as FastReID and torchreid
do. When no query is valid every metric is 0/0, so there is no number to
report: `evaluate_rank` raises a ValueError saying why (`explain_no_valid_query`:
ids absent from the gallery, or every match under the query's own camera, as
in a single-camera set), and jreid's evaluation reports it as an
`EvaluationError` naming the test set (`retrieval.check_split`, which needs
only the labels, so a run can refuse such a set before it trains). NaN
distances raise too, since no ranking of them means anything; +-inf are
ranked as the largest / smallest distances (`retrieval.evaluate_split`
refuses non-finite features and distances before they get here).

Ties in distance are broken by gallery index (the lower index ranks first),
as a stable sort does. Without a fixed rule, tied distances (quantised
features, re-ranked or integer distances) give results that depend on the
sort algorithm and the machine.

The work is vectorised over chunks of queries: one sort of a (chunk, G)
block, one gather of gallery pids, then only the positions of same-pid
items are kept (about G / num_ids per query), so everything after the sort
is small. Memory is bounded by the chunk size, not by Q.
"""
from __future__ import annotations

import numpy as np

# About 4M distances per chunk: a few tens of MiB of temporaries at any Q.
_CHUNK_ELEMENTS = 1 << 22


def evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50, *,
                  chunk_size: int | None = None) -> dict:
  """Ranks the gallery for every query and returns the protocol's metrics.

  Args:
    distmat: (Q, G) distances, smaller is more similar (numpy or jax).
    q_pids, q_camids: (Q,) query identities and cameras.
    g_pids, g_camids: (G,) gallery identities and cameras.
    max_rank: length of the CMC curve.
    chunk_size: queries ranked at once; by default about 4M distances a chunk.

  Returns:
    ``cmc``: float64 array of length ``max_rank``; ``cmc[k]`` is the fraction
      of valid queries whose first correct match is within the top k+1. If
      the gallery is shorter than ``max_rank`` the curve is padded with its
      last value (a valid query always finds its match within the gallery,
      so the padding is 1, as the cumulative definition implies).
    ``mAP``: mean over valid queries of sum_k precision@k * rel_k / num_rel.
    ``mINP``: mean over valid queries of num_rel / (1-based rank of the
      hardest, i.e. last, correct match).
    ``num_valid``: number of queries with at least one correct match.

  Raises:
    ValueError: on inconsistent shapes, NaN distances, or when no query has
      a correct match (every metric would be 0/0; the message says why).
  """
  distmat = np.asarray(distmat)
  q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
  q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
  _check_shapes(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
  num_q, num_g = distmat.shape
  if chunk_size is None:
    chunk_size = max(1, _CHUNK_ELEMENTS // max(num_g, 1))
  if chunk_size < 1:
    raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")

  first = np.zeros(num_q, np.int64)  # 1-based rank of the first correct match
  hardest = np.zeros(num_q, np.int64)  # 1-based rank of the last correct match
  num_rel = np.zeros(num_q, np.int64)
  ap = np.zeros(num_q, np.float64)
  for start in range(0, num_q, chunk_size):
    rows = slice(start, start + chunk_size)
    block = distmat[rows]
    if block.dtype.kind in "fcV" and np.isnan(block).any():
      raise ValueError("distmat contains NaN; a ranking would be meaningless")
    order = _stable_argsort_rows(block)
    (first[rows], hardest[rows], num_rel[rows],
     ap[rows]) = _rank_stats(order, q_pids[rows], q_camids[rows], g_pids, g_camids)

  valid = num_rel > 0
  num_valid = int(valid.sum())
  if num_valid == 0:
    raise ValueError(
        "no query has a correct match in the gallery (after removing same-pid, same-camera "
        "items), so CMC/mAP/mINP are undefined: "
        + explain_no_valid_query(q_pids, g_pids, q_camids, g_camids))
  # A query counts in cmc[k] once its first match is at rank <= k+1; queries
  # whose first match is beyond max_rank fall in the dropped overflow bin.
  hits = np.bincount(np.minimum(first[valid], max_rank + 1) - 1, minlength=max_rank + 1)
  cmc = np.cumsum(hits[:max_rank]) / num_valid
  return {
      "cmc": cmc.astype(np.float64),
      "mAP": float(ap[valid].mean()),
      "mINP": float((num_rel[valid] / hardest[valid]).mean()),
      "num_valid": num_valid,
  }


def valid_queries(q_pids, g_pids, q_camids, g_camids) -> np.ndarray:
  """(Q,) bool: which queries keep a correct match after the same-id-same-camera removal.

  Labels only, no distances: a query is valid iff the gallery holds its id
  under some other camera. Counts per gallery id and per (id, camera) pair
  give it in O((Q + G) log G), without a (Q, G) matrix.
  """
  q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
  q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
  if g_pids.size == 0 or q_pids.size == 0:
    return np.zeros(q_pids.shape, bool)
  pids = np.unique(g_pids)
  cams = np.unique(np.concatenate([q_camids, g_camids]))
  g_index = np.searchsorted(pids, g_pids)
  per_pid = np.bincount(g_index, minlength=len(pids))
  pairs, per_pair = np.unique(g_index * len(cams) + np.searchsorted(cams, g_camids),
                              return_counts=True)
  q_index = np.minimum(np.searchsorted(pids, q_pids), len(pids) - 1)
  in_gallery = pids[q_index] == q_pids
  q_pair = q_index * len(cams) + np.searchsorted(cams, q_camids)
  at = np.minimum(np.searchsorted(pairs, q_pair), len(pairs) - 1)
  same_camera = np.where(pairs[at] == q_pair, per_pair[at], 0)
  return in_gallery & (per_pid[q_index] - same_camera > 0)


def explain_no_valid_query(q_pids, g_pids, q_camids, g_camids) -> str:
  """Why no query has a correct match, in words a user can act on."""
  q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
  q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
  if q_pids.size == 0 or g_pids.size == 0:
    return f"the split has {q_pids.size} queries and {g_pids.size} gallery images"
  absent = ~np.isin(q_pids, g_pids)
  shown = ", ".join(str(p) for p in np.unique(q_pids)[:5])
  if absent.all():
    return (f"none of the {q_pids.size} queries' ids (e.g. {shown}) appears in the gallery: are "
            "query and gallery from the same dataset?")
  cameras = np.unique(np.concatenate([q_camids, g_camids]))
  if len(cameras) == 1:
    return (f"every query and gallery image has camera {cameras[0]} (0-based), so every correct "
            "match is removed as the same person seen by the same camera; the protocol needs "
            "a second camera")
  own = np.unique(q_camids[~absent])
  cameras = f"camera {own[0]}" if len(own) == 1 else f"cameras {', '.join(map(str, own[:5]))}"
  same_camera = (f"find their id in the gallery only under their own camera ({cameras}, 0-based), "
                 "where the protocol removes it: the set needs the same people seen by another camera")
  if not absent.any():
    return f"all {q_pids.size} queries {same_camera}"
  return (f"{int(absent.sum())} of the {q_pids.size} queries have an id absent from the gallery "
          f"and the others {same_camera}")


def _check_shapes(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
  if distmat.ndim != 2:
    raise ValueError(f"distmat must be 2-D (num_query, num_gallery), got shape {distmat.shape}")
  num_q, num_g = distmat.shape
  for name, arr, expected, side in (("q_pids", q_pids, num_q, "rows"),
                                    ("q_camids", q_camids, num_q, "rows"),
                                    ("g_pids", g_pids, num_g, "columns"),
                                    ("g_camids", g_camids, num_g, "columns")):
    if arr.ndim != 1 or arr.shape[0] != expected:
      raise ValueError(f"{name} has shape {arr.shape} but distmat {distmat.shape} has "
                       f"{expected} {side}; expected ({expected},)")
  if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
    raise ValueError(f"max_rank must be a positive integer, got {max_rank!r}")


def _stable_argsort_rows(block: np.ndarray) -> np.ndarray:
  """Argsort of each row, ties broken by column index.

  numpy's stable argsort is a merge sort, ~5x slower than its vectorised
  quicksort. For 32-bit (and narrower) floats we get the stable order from an
  unstable *sort* instead: each distance's bits are mapped to an unsigned
  integer of the same order, put in the high 32 bits of a uint64 whose low 32
  bits hold the column index. The keys are distinct, so any sort orders them
  exactly as a stable argsort would, and the low bits give the permutation.
  Wider types (float64, int64) would not fit and use the stable argsort.
  """
  if block.dtype.itemsize > 4 or block.dtype.kind in "iub":
    return np.argsort(block, axis=1, kind="stable")
  # + 0.0 turns -0.0 into +0.0 so that the two zeros tie, as they compare equal.
  bits = (block.astype(np.float32) + np.float32(0.0)).view(np.uint32)
  # IEEE order -> unsigned order: flip all bits of negatives, set the sign of
  # positives, so that -inf < ... < -0 < +0 < ... < +inf as unsigned ints.
  ordered = np.where(bits >> 31 == 1, ~bits, bits | np.uint32(0x80000000))
  keys = ordered.astype(np.uint64) << np.uint64(32)
  keys |= np.arange(block.shape[1], dtype=np.uint64)
  keys.sort(axis=1)
  return (keys & np.uint64(0xFFFFFFFF)).astype(np.intp)


def _rank_stats(order, q_pids, q_camids, g_pids, g_camids):
  """Per query of a chunk: first and hardest correct rank, num_rel and AP.

  Only same-pid positions are materialised. Ranks are 1-based among the
  *kept* items: a correct match's rank is its position in the full ranking
  minus the removed (same pid, same camera) items ahead of it.
  """
  num_rows = order.shape[0]
  same_pid = g_pids[order] == q_pids[:, None]
  rows, cols = np.nonzero(same_pid)  # row-major: by query, then by rank
  removed = g_camids[order[rows, cols]] == q_camids[rows]
  removed_before = np.cumsum(removed) - removed
  removed_before -= removed_before[_group_starts(rows, num_rows)[rows]]
  keep = ~removed
  rows = rows[keep]
  rank = (cols - removed_before + 1)[keep]

  num_rel = np.bincount(rows, minlength=num_rows)
  starts = _group_starts(rows, num_rows)
  nth = np.arange(rows.size) - starts[rows] + 1  # this is the nth correct match
  ap_sum = np.bincount(rows, weights=nth / rank, minlength=num_rows)

  valid = num_rel > 0
  first = np.zeros(num_rows, np.int64)
  hardest = np.zeros(num_rows, np.int64)
  first[valid] = rank[starts[valid]]
  hardest[valid] = rank[starts[valid] + num_rel[valid] - 1]
  ap = np.divide(ap_sum, num_rel, out=np.zeros(num_rows), where=valid)
  return first, hardest, num_rel, ap


def _group_starts(rows: np.ndarray, num_rows: int) -> np.ndarray:
  """Index of each row's first entry in the sorted array ``rows``."""
  counts = np.bincount(rows, minlength=num_rows)
  return np.cumsum(counts) - counts
