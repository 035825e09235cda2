"""Feature extraction + ranking evaluation of one test split, as the loop runs it.

A split that cannot be scored is an `EvaluationError` naming the test set and
the likely cause, never a traceback from deep inside a metric:

* no query with a correct match (ids absent from the gallery, or one camera
  only), an empty query or gallery, or `eval.roc` on a gallery without any
  pair of different ids: `check_split`, from the labels alone, so it costs
  nothing and can run before training (queries without a match, when some
  have one, are skipped as the protocol says; see `jreid.evaluation.metrics`);
* NaN/inf features or distances (a diverged model, or weights holding
  NaN/inf or a negative BatchNorm variance): checked after extraction.

Query expansion asking for more neighbours than the gallery holds is a
`ConfigError` naming the key. The ROC picture of a report is left out (and
the rest drawn) when the gallery has no pair of different ids.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Callable

import jax
import numpy as np

from jreid.core import sharding
from jreid.data import pipeline
from jreid.data.records import Record, Split
from jreid.errors import ConfigError, EvaluationError
from jreid.evaluation import visualize
from jreid.evaluation.distance import compute_distance
from jreid.evaluation.dsr import dsr_distance
from jreid.evaluation.metrics import evaluate_rank, explain_no_valid_query, valid_queries
from jreid.evaluation.query_expansion import alpha_query_expansion, query_expansion
from jreid.evaluation.rerank import re_ranking
from jreid.evaluation.roc import roc, tpr_at_fpr
from jreid.evaluation.single_shot import evaluate_single_shot


def extract_features(features_fn: Callable, state, records: list[Record], *, mesh,
                     options: pipeline.ImageOptions, batch_size: int) -> np.ndarray:
  """Embeddings of `records` in order, on every host; each host reads and embeds its slice."""
  devices = mesh.devices.size
  batch_size = -(-batch_size // devices) * devices
  chunks = []
  for batch in pipeline.test_batches(records, options=options, batch_size=batch_size,
                                     host=jax.process_index(), num_hosts=jax.process_count()):
    embeddings = jax.device_get(features_fn(state, sharding.global_batch(batch["image"], mesh)))
    chunks.append(np.asarray(embeddings))  # replicated: the whole batch, padding last
  return np.concatenate(chunks)[:len(records)].astype(np.float32)


@dataclasses.dataclass(frozen=True)
class ReportOptions:
  """Where and how many pictures `evaluate_split` draws (see `jreid.evaluation.visualize`)."""
  out_dir: pathlib.Path
  num_queries: int = 10
  topk: int = 10
  seed: int = 0


@dataclasses.dataclass(frozen=True)
class PostProcessing:
  """Optional evaluation steps, from `config.eval` (FastReID's TEST.* switches)."""
  query_expansion: str = ""          # "" | "qe" | "alpha_qe"
  qe_top_m: int = 1
  aqe_k: int = 5
  aqe_alpha: float = 3.0
  rerank: bool = False               # also report k-reciprocal re-ranked numbers
  rerank_k1: int = 20
  rerank_k2: int = 6
  rerank_lambda: float = 0.3
  roc: bool = False                  # also report TPR at FPR 1e-4, 1e-3, 1e-2
  cuhk03_single_shot: bool = False   # CMC by CUHK03's one-image-per-identity protocol
  dsr: bool = False                  # also report DSR matching of spatial maps (partial ReID)
  dsr_lambda: float = 1e-3

  @classmethod
  def from_config(cls, eval_config) -> "PostProcessing":
    names = [f.name for f in dataclasses.fields(cls)]
    return cls(**{name: eval_config[name] for name in names if name in eval_config})


def _labels(split: Split):
  return (np.array([r.pid for r in split.query]), np.array([r.pid for r in split.gallery]),
          np.array([r.camid for r in split.query]), np.array([r.camid for r in split.gallery]))


def _percent(metrics: dict) -> dict:
  cmc = metrics["cmc"]
  return {"mAP": 100 * metrics["mAP"], "mINP": 100 * metrics["mINP"],
          "rank1": 100 * cmc[0], "rank5": 100 * cmc[min(4, len(cmc) - 1)],
          "rank10": 100 * cmc[min(9, len(cmc) - 1)]}


def describe(split: Split, name: str | None = None) -> str:
  """How a message names a test set: its name, else the folder its queries are in."""
  if name:
    return f"test set {name!r}"
  records = split.query or split.gallery
  if not records:
    return "an empty test set"
  folders = sorted({os.path.dirname(r.path) for r in records})
  folder = folders[0] if len(folders) == 1 else os.path.commonpath(folders)
  return f"the test set {'with queries in' if split.query else 'with its gallery in'} {folder}"


def check_split(split: Split, post: PostProcessing = PostProcessing(), *,
                name: str | None = None) -> int:
  """Refuses a split that cannot be scored, from its labels alone; returns its valid query count.

  Cheap (no image is read), so a run can call it for every test set before it
  trains; `evaluate_split` calls it too.
  """
  where = describe(split, name)
  if not split.query or not split.gallery:
    raise EvaluationError(f"{where} has {len(split.query)} query and {len(split.gallery)} gallery "
                          "images; a test set needs both (is it a training-only dataset?)")
  labels = _labels(split)
  num_valid = int(valid_queries(*labels).sum())
  if num_valid == 0:
    raise EvaluationError(f"{where}: no query has a correct match in the gallery after the "
                          "protocol removes same-id same-camera images, so mAP/CMC are undefined: "
                          + explain_no_valid_query(*labels))
  if post.roc and len({r.pid for r in split.query} | {r.pid for r in split.gallery}) < 2:
    raise EvaluationError(f"{where}: eval.roc needs query-gallery pairs of different ids, but "
                          "every image has the same id; set eval.roc=False for it")
  for key, value in (("qe_top_m", post.qe_top_m if post.query_expansion == "qe" else 0),
                     ("aqe_k", post.aqe_k - 1 if post.query_expansion == "alpha_qe" else 0)):
    if value > len(split.gallery):
      raise ConfigError(f"eval.{key}={getattr(post, key)} asks for {value} gallery neighbours "
                        f"per query, but {where} has {len(split.gallery)} gallery images")
  return num_valid


_NOT_FINITE_CAUSE = ("the model's output is not finite: a diverged run (look at the training "
                     "losses), or weights from init_from/resume holding NaN/inf or a negative "
                     "BatchNorm running variance")


def check_finite(where: str, **arrays: np.ndarray) -> None:
  """Refuses NaN/inf in any of `arrays` (per image: features or maps, by name)."""
  # Rows (images) with at least one non-finite value, per array.
  bad = {key: int((~np.isfinite(a.reshape(len(a), -1))).any(axis=1).sum()) if a.size else 0
         for key, a in arrays.items()}
  if any(bad.values()):
    counts = ", ".join(f"{n} of {len(arrays[key])} {key.replace('_', ' ')}"
                       for key, n in bad.items() if n)
    raise EvaluationError(f"{where}: NaN or inf in {counts}, so no ranking is possible; "
                          f"{_NOT_FINITE_CAUSE}")


def _check_distances(where: str, distances: np.ndarray, metric: str, *features) -> None:
  """Finite features can still give inf/NaN distances: squares of huge norms overflow float32."""
  if np.isfinite(distances).all():
    return
  largest = max(float(np.abs(f).max()) for f in features)
  raise EvaluationError(f"{where}: the {metric} distances are NaN or inf though the features are "
                        f"finite: feature values up to {largest:g} overflow float32 when squared "
                        "(eval.metric='cosine' normalises them; or the model is diverging)")


def _check_norms(where: str, metric: str, **features: np.ndarray) -> None:
  """Cosine distances divide by the feature norms: a norm that overflows float32 makes every
  distance of that image 1, a silent garbage ranking (a diverged model's features)."""
  if metric != "cosine":
    return
  with np.errstate(over="ignore"):
    bad = {key: int(np.isinf(np.square(f.reshape(len(f), -1).astype(np.float32)).sum(axis=1)).sum())
           for key, f in features.items() if f.size}
  if any(bad.values()):
    counts = ", ".join(f"{n} of {len(features[key])} {key.replace('_', ' ')}"
                       for key, n in bad.items() if n)
    largest = max(float(np.abs(f).max()) for f in features.values() if f.size)
    raise EvaluationError(f"{where}: the norms of {counts} overflow float32 (values up to "
                          f"{largest:g}), so their cosine distances are meaningless; the model's "
                          "output has diverged (look at the training losses and optim.lr)")


def expand_queries(query: np.ndarray, gallery: np.ndarray, post: PostProcessing) -> np.ndarray:
  if post.query_expansion == "qe":
    return query_expansion(query, gallery, post.qe_top_m)
  if post.query_expansion == "alpha_qe":
    return alpha_query_expansion(query, gallery, post.aqe_k, post.aqe_alpha)
  if post.query_expansion:
    raise ConfigError(f"eval.query_expansion={post.query_expansion!r}; use '', 'qe' or 'alpha_qe'")
  return query


def write_report(distances, split: Split, report: ReportOptions) -> None:
  q_pids, g_pids, q_camids, g_camids = _labels(split)
  out_dir = pathlib.Path(report.out_dir)
  visualize.save_rank_lists(distances, split.query, split.gallery, out_dir,
                            num_queries=report.num_queries, topk=report.topk, seed=report.seed)
  visualize.save_distance_distribution(distances, q_pids, g_pids, q_camids, g_camids,
                                       out_dir / "distance_distribution.png")
  if len(np.unique(np.concatenate([q_pids, g_pids]))) > 1:  # else no negative pair: no ROC
    fpr, tpr, _ = roc(distances, q_pids, g_pids, q_camids, g_camids)
    marks = tpr_at_fpr(distances, q_pids, g_pids, q_camids, g_camids)
    visualize.save_roc_curve(fpr, tpr, out_dir / "roc.png", marks=marks)


def evaluate_split(features_fn: Callable, state, split: Split, *, mesh,
                   options: pipeline.ImageOptions, batch_size: int, metric: str,
                   max_rank: int = 50, report: ReportOptions | None = None,
                   post: PostProcessing = PostProcessing(),
                   spatial_fn: Callable | None = None,
                   embed: Callable[[list[Record]], np.ndarray] | None = None,
                   name: str | None = None) -> dict:
  """FastReID's numbers for one dataset, in percent (mAP, rank-1/5/10, mINP).

  `post` adds query expansion (applied to every number reported), re-ranked
  numbers under "rerank", TPR@FPR under "roc", CUHK03 single-shot CMC under
  "single_shot" and DSR matching of `spatial_fn`'s maps under "dsr" (meant for
  the small partial-ReID sets: every image's whole map is held in memory).
  With `report`, also writes the rank-list, distance and ROC pictures.
  `embed(records) -> features` replaces `features_fn` for query and gallery
  where each image needs its own weights (DASA's routing to domain banks).
  `name` names the test set in errors (`check_split`, `check_finite`).
  """
  where = describe(split, name)
  check_split(split, post, name=name)
  extract = lambda records, fn=features_fn: extract_features(fn, state, records, mesh=mesh,
                                                             options=options, batch_size=batch_size)
  embed = embed or extract
  query, gallery = embed(split.query), embed(split.gallery)
  check_finite(where, query_features=query, gallery_features=gallery)
  _check_norms(where, metric, query_features=query, gallery_features=gallery)
  query = expand_queries(query, gallery, post)
  distances = compute_distance(query, gallery, metric=metric)
  _check_distances(where, distances, metric, query, gallery)
  labels = _labels(split)
  metrics = evaluate_rank(distances, *labels, max_rank=max_rank)
  results = {**_percent(metrics), "num_query": len(split.query), "num_gallery": len(split.gallery),
             "num_valid_query": int(metrics["num_valid"])}
  if post.rerank:
    reranked = re_ranking(distances, compute_distance(query, query, metric=metric),
                          compute_distance(gallery, gallery, metric=metric),
                          k1=post.rerank_k1, k2=post.rerank_k2, lambda_value=post.rerank_lambda)
    results["rerank"] = _percent(evaluate_rank(reranked, *labels, max_rank=max_rank))
  if post.roc:
    results["roc"] = {f"tpr@fpr={fpr:g}": 100 * tpr
                      for fpr, tpr in tpr_at_fpr(distances, *labels).items()}
  if post.cuhk03_single_shot:
    results["single_shot"] = _percent(evaluate_single_shot(distances, *labels, max_rank=max_rank))
  if post.dsr:
    if spatial_fn is None:
      raise ConfigError("eval.dsr needs a method with spatial_features (a CNN backbone map)")
    query_maps, gallery_maps = extract(split.query, spatial_fn), extract(split.gallery, spatial_fn)
    check_finite(where, query_maps=query_maps, gallery_maps=gallery_maps)
    dsr = dsr_distance(query_maps, gallery_maps, lam=post.dsr_lambda)
    check_finite(where, dsr_distance_rows=dsr)
    results["dsr"] = _percent(evaluate_rank(dsr, *labels, max_rank=max_rank))
  if report is not None:
    write_report(distances, split, report)
  return results
