"""Pictures a ReID researcher reads: rank lists, distance distributions, ROC curves.

Rank lists follow the evaluation protocol: gallery images of the query's
identity taken by the query's camera are left out, as `evaluate_rank` does,
so the picture shows exactly the ranking the metrics scored.
"""
from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from jreid.data.records import Record
from jreid.data.transforms import decode_record, resize


def _figure(figsize=(6, 4)):
  """A figure and its axes, drawn to files only: matplotlib is imported on first use (0.4 s of
  every run's start-up otherwise), and pyplot not at all, so neither servers without a display
  nor a notebook's own backend (its inline plots) are touched."""
  from matplotlib.figure import Figure
  figure = Figure(figsize=figsize)
  return figure, figure.subplots()


QUERY_COLOUR = (40, 90, 220)
CORRECT_COLOUR = (20, 170, 60)
WRONG_COLOUR = (210, 30, 30)


def _tile(record: Record, size: tuple[int, int], colour, caption: str, border: int = 4) -> Image.Image:
  height, width = size
  image = Image.fromarray(resize(decode_record(record), size))
  tile = Image.new("RGB", (width + 2 * border, height + 2 * border + 14), "white")
  tile.paste(Image.new("RGB", (width + 2 * border, height + 2 * border), colour), (0, 0))
  tile.paste(image, (border, border))
  ImageDraw.Draw(tile).text((border, height + 2 * border + 1), caption, fill=(0, 0, 0))
  return tile


def ranked_gallery(distances: np.ndarray, query: Record, gallery: Sequence[Record]) -> np.ndarray:
  """Gallery indices by ascending distance (ties by index), protocol-removed items dropped."""
  order = np.argsort(distances, kind="stable")
  keep = [i for i in order if not (gallery[i].pid == query.pid and gallery[i].camid == query.camid)]
  return np.asarray(keep, dtype=np.int64)


def rank_list_image(query: Record, gallery: Sequence[Record], distances: np.ndarray, *,
                    topk: int = 10, size: tuple[int, int] = (128, 64)) -> Image.Image:
  """The query (blue) followed by its top-k matches, green if correct, red if wrong, with distances."""
  ranked = ranked_gallery(distances, query, gallery)[:topk]
  tiles = [_tile(query, size, QUERY_COLOUR, f"query {query.pid}")]
  for rank, index in enumerate(ranked, start=1):
    match = gallery[index]
    colour = CORRECT_COLOUR if match.pid == query.pid else WRONG_COLOUR
    tiles.append(_tile(match, size, colour, f"{rank}: {distances[index]:.3f}"))
  gap = 8
  sheet = Image.new("RGB", (sum(t.width for t in tiles) + gap * len(tiles), tiles[0].height), "white")
  x = 0
  for i, tile in enumerate(tiles):
    sheet.paste(tile, (x, 0))
    x += tile.width + (2 * gap if i == 0 else gap)
  return sheet


def save_rank_lists(distmat: np.ndarray, query: Sequence[Record], gallery: Sequence[Record],
                    out_dir: str | pathlib.Path, *, num_queries: int = 10, topk: int = 10,
                    seed: int = 0) -> list[pathlib.Path]:
  """Rank lists of `num_queries` queries picked with `seed`, one PNG each."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  picks = np.random.default_rng(seed).choice(len(query), min(num_queries, len(query)), replace=False)
  paths = []
  for q in sorted(picks):
    path = out_dir / f"rank_list_q{q:05d}_pid{query[q].pid}.png"
    rank_list_image(query[q], gallery, distmat[q], topk=topk).save(path)
    paths.append(path)
  return paths


def pair_distances(distmat, q_pids, g_pids, q_camids, g_camids) -> tuple[np.ndarray, np.ndarray]:
  """Distances of matching and non-matching query-gallery pairs, protocol-removed pairs excluded."""
  q_pids, g_pids = np.asarray(q_pids)[:, None], np.asarray(g_pids)[None, :]
  same_pid = q_pids == g_pids
  removed = same_pid & (np.asarray(q_camids)[:, None] == np.asarray(g_camids)[None, :])
  distmat = np.asarray(distmat)
  return distmat[same_pid & ~removed], distmat[~same_pid]


def save_distance_distribution(distmat, q_pids, g_pids, q_camids, g_camids,
                               path: str | pathlib.Path, *, bins: int = 100) -> pathlib.Path:
  positives, negatives = pair_distances(distmat, q_pids, g_pids, q_camids, g_camids)
  figure, axes = _figure()
  low = min(positives.min(initial=np.inf), negatives.min(initial=np.inf))
  high = max(positives.max(initial=-np.inf), negatives.max(initial=-np.inf))
  if low == high:  # one distinct distance: give its bar a width
    low, high = low - 0.5, high + 0.5
  edges = np.linspace(low, high, bins + 1) if low < high else bins  # (no pair at all: any bins)
  # An empty side (a gallery of one id has no different-id pair) has no density to draw.
  if negatives.size:
    axes.hist(negatives, edges, density=True, alpha=0.6, color="tab:red", label=f"different id ({negatives.size})")
  if positives.size:
    axes.hist(positives, edges, density=True, alpha=0.6, color="tab:green", label=f"same id ({positives.size})")
  axes.set_xlabel("distance")
  axes.set_ylabel("density")
  axes.set_title("query-gallery distance distribution")
  axes.legend()
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  return pathlib.Path(path)


def save_roc_curve(fpr: np.ndarray, tpr: np.ndarray, path: str | pathlib.Path, *,
                   marks: dict[float, float] | None = None) -> pathlib.Path:
  """TPR against FPR on a log axis, with the TPR@FPR operating points marked."""
  figure, axes = _figure()
  positive = np.asarray(fpr) > 0
  axes.plot(np.asarray(fpr)[positive], np.asarray(tpr)[positive], color="tab:blue")
  for target, value in (marks or {}).items():
    axes.scatter([target], [value], color="tab:orange", zorder=3)
    axes.annotate(f"TPR {value:.3f} @ FPR {target:g}", (target, value), textcoords="offset points",
                  xytext=(5, -12), fontsize=8)
  axes.set_xscale("log")
  axes.set_xlabel("false positive rate")
  axes.set_ylabel("true positive rate")
  axes.set_title("ROC (query-gallery pairs)")
  axes.grid(True, which="both", alpha=0.3)
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  return pathlib.Path(path)


def save_lifelong_curve(steps: Sequence[str], maps: Sequence[float], rank1s: Sequence[float],
                        path: str | pathlib.Path, *, title: str) -> None:
  """The seen-domain average after each lifelong step: forgetting shows as a falling line."""
  figure, axes = _figure()
  positions = np.arange(1, len(steps) + 1)
  axes.plot(positions, maps, "o-", label="mAP")
  axes.plot(positions, rank1s, "s--", label="rank-1")
  axes.set_xticks(positions, [f"{i}: {s}" for i, s in zip(positions, steps)], rotation=20)
  axes.set_xlabel("after training step")
  axes.set_ylabel("seen-domain average (%)")
  axes.set_ylim(0, 100)
  axes.set_title(title)
  axes.legend()
  axes.grid(alpha=0.3)
  figure.tight_layout()
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(path, dpi=100)
