"""Feature extraction + ranking evaluation of one test split, as the loop runs it."""
from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from jreid.data import pipeline
from jreid.data.records import Record, Split
from jreid.evaluation.distance import compute_distance
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


def evaluate_split(features_fn: Callable, state, split: Split, *, mesh,
                   options: pipeline.ImageOptions, batch_size: int, metric: str,
                   max_rank: int = 50) -> dict:
  """FastReID's numbers for one dataset, in percent (mAP, rank-1/5/10, mINP)."""
  extract = lambda records: extract_features(features_fn, state, records, mesh=mesh,
                                             options=options, batch_size=batch_size)
  query, gallery = extract(split.query), extract(split.gallery)
  distances = compute_distance(query, gallery, metric=metric)
  metrics = evaluate_rank(distances,
                          np.array([r.pid for r in split.query]), np.array([r.pid for r in split.gallery]),
                          np.array([r.camid for r in split.query]),
                          np.array([r.camid for r in split.gallery]), max_rank=max_rank)
  cmc = metrics["cmc"]
  return {"mAP": 100 * metrics["mAP"], "mINP": 100 * metrics["mINP"],
          "rank1": 100 * cmc[0], "rank5": 100 * cmc[min(4, len(cmc) - 1)],
          "rank10": 100 * cmc[min(9, len(cmc) - 1)], "num_query": len(split.query),
          "num_gallery": len(split.gallery), "num_valid_query": int(metrics["num_valid"])}
