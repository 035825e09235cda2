"""Feature extraction + ranking evaluation of one test split, as the loop runs it."""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Callable

import jax
import numpy as np

from jreid.data import pipeline
from jreid.data.records import Record, Split
from jreid.evaluation.distance import compute_distance
from jreid.evaluation import visualize
from jreid.evaluation.metrics import evaluate_rank
from jreid.train import sharding


def extract_features(features_fn: Callable, state, records: list[Record], *, mesh,
                     options: pipeline.ImageOptions, batch_size: int) -> np.ndarray:
  """Embeddings of `records` in order; every host computes its slice of each batch."""
  devices = mesh.devices.size
  batch_size = -(-batch_size // devices) * devices
  hosts, host = jax.process_count(), jax.process_index()
  local = batch_size // hosts
  chunks = []
  for batch in pipeline.test_batches(records, options=options, batch_size=batch_size):
    images = batch["image"][host * local:(host + 1) * local]
    embeddings = jax.device_get(features_fn(state, sharding.global_batch(images, mesh)))
    chunks.append(np.asarray(embeddings)[batch["valid"]])
  return np.concatenate(chunks).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class ReportOptions:
  """Where and how many pictures `evaluate_split` draws (see `jreid.evaluation.visualize`)."""
  out_dir: pathlib.Path
  num_queries: int = 10
  topk: int = 10
  seed: int = 0


def write_report(distances, split: Split, report: ReportOptions) -> None:
  ids = [np.array([getattr(r, key) for r in records])
         for key in ("pid", "camid") for records in (split.query, split.gallery)]
  q_pids, g_pids, q_camids, g_camids = ids
  visualize.save_rank_lists(distances, split.query, split.gallery, report.out_dir,
                            num_queries=report.num_queries, topk=report.topk, seed=report.seed)
  visualize.save_distance_distribution(distances, q_pids, g_pids, q_camids, g_camids,
                                       pathlib.Path(report.out_dir) / "distance_distribution.png")


def evaluate_split(features_fn: Callable, state, split: Split, *, mesh,
                   options: pipeline.ImageOptions, batch_size: int, metric: str,
                   max_rank: int = 50, report: ReportOptions | None = None) -> dict:
  """FastReID's numbers for one dataset, in percent (mAP, rank-1/5/10, mINP).

  With `report`, also writes the rank-list and distance pictures.
  """
  extract = lambda records: extract_features(features_fn, state, records, mesh=mesh,
                                             options=options, batch_size=batch_size)
  query, gallery = extract(split.query), extract(split.gallery)
  distances = compute_distance(query, gallery, metric=metric)
  metrics = evaluate_rank(distances,
                          np.array([r.pid for r in split.query]), np.array([r.pid for r in split.gallery]),
                          np.array([r.camid for r in split.query]),
                          np.array([r.camid for r in split.gallery]), max_rank=max_rank)
  if report is not None:
    write_report(distances, split, report)
  cmc = metrics["cmc"]
  return {"mAP": 100 * metrics["mAP"], "mINP": 100 * metrics["mINP"],
          "rank1": 100 * cmc[0], "rank5": 100 * cmc[min(4, len(cmc) - 1)],
          "rank10": 100 * cmc[min(9, len(cmc) - 1)], "num_query": len(split.query),
          "num_gallery": len(split.gallery), "num_valid_query": int(metrics["num_valid"])}
