"""The loop's evaluation step, with every optional part, against the parts called by hand."""
import jax
import numpy as np
import pytest

from jreid.data import datasets, pipeline
from jreid.errors import ConfigError
from jreid.evaluation import (alpha_query_expansion, compute_distance, evaluate_rank, re_ranking,
                              tpr_at_fpr)
from jreid.core import sharding
from jreid.evaluation import retrieval
from jreid.evaluation.dsr import dsr_distance
from jreid.evaluation.single_shot import evaluate_single_shot

OPTIONS = pipeline.ImageOptions(height=16, width=8)


def colour_features(state, images):
  """A stand-in embedding: the mean colour of each row band (no model needed)."""
  return images.reshape(images.shape[0], 4, -1, 3).mean(axis=2).reshape(images.shape[0], -1)


def colour_maps(state, images):
  """Stand-in spatial features: 4x2 cells of mean colour, as (B, 8, 3)."""
  b, h, w, _ = images.shape
  cells = images.reshape(b, 4, h // 4, 2, w // 2, 3).mean(axis=(2, 4))
  return cells.reshape(b, 8, 3)


def test_evaluate_split_with_every_option(market_root, tmp_path):
  split = datasets.get("market1501", market_root)
  mesh = sharding.data_mesh()
  post = retrieval.PostProcessing(query_expansion="alpha_qe", aqe_k=3, rerank=True, rerank_k1=4,
                                  rerank_k2=2, roc=True, cuhk03_single_shot=True, dsr=True)
  results = retrieval.evaluate_split(
      jax.jit(colour_features), None, split, mesh=mesh, options=OPTIONS, batch_size=8,
      metric="euclidean", max_rank=5, post=post, report=retrieval.ReportOptions(tmp_path, 2, 3),
      spatial_fn=jax.jit(colour_maps))

  extract = lambda records: np.stack([colour_features(None, pipeline.load_test(r, OPTIONS)[None])[0]
                                      for r in records])
  query = alpha_query_expansion(extract(split.query), extract(split.gallery), 3, 3.0)
  gallery = extract(split.gallery)
  labels = retrieval._labels(split)
  distances = compute_distance(query, gallery, metric="euclidean")
  base = evaluate_rank(distances, *labels, max_rank=5)
  assert np.isclose(results["mAP"], 100 * base["mAP"], atol=1e-4)
  assert np.isclose(results["rank1"], 100 * base["cmc"][0])
  reranked = re_ranking(distances, compute_distance(query, query, metric="euclidean"),
                        compute_distance(gallery, gallery, metric="euclidean"), k1=4, k2=2)
  assert np.isclose(results["rerank"]["mAP"], 100 * evaluate_rank(reranked, *labels, max_rank=5)["mAP"],
                    atol=1e-4)
  expected_roc = tpr_at_fpr(distances, *labels)
  assert results["roc"] == pytest.approx({f"tpr@fpr={k:g}": 100 * v for k, v in expected_roc.items()})
  single = evaluate_single_shot(distances, *labels, max_rank=5)
  assert np.isclose(results["single_shot"]["rank1"], 100 * single["cmc"][0])
  maps = lambda records: np.stack([colour_maps(None, pipeline.load_test(r, OPTIONS)[None])[0]
                                   for r in records])
  dsr = dsr_distance(maps(split.query), maps(split.gallery))
  assert np.isclose(results["dsr"]["mAP"], 100 * evaluate_rank(dsr, *labels, max_rank=5)["mAP"],
                    atol=1e-4)
  assert {p.name for p in tmp_path.iterdir()} >= {"roc.png", "distance_distribution.png"}


def test_unknown_query_expansion_is_a_config_error():
  with pytest.raises(ConfigError, match="alpha_qe"):
    retrieval.expand_queries(np.ones((1, 2)), np.ones((3, 2)), retrieval.PostProcessing("aqe"))


def test_dsr_without_spatial_features_is_a_config_error(market_root):
  split = datasets.get("market1501", market_root)
  with pytest.raises(ConfigError, match="spatial_features"):
    retrieval.evaluate_split(jax.jit(colour_features), None, split, mesh=sharding.data_mesh(),
                             options=OPTIONS, batch_size=8, metric="cosine",
                             post=retrieval.PostProcessing(dsr=True))
