"""The loop's evaluation step, with every optional part, against the parts called by hand."""
import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.data import datasets, pipeline
from jreid.data.records import Split
from jreid.errors import ConfigError, EvaluationError
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


# --- Splits that cannot be scored: an EvaluationError naming the set and the cause --------------

def _evaluate(split, features=colour_features, post=retrieval.PostProcessing(), metric="cosine",
              **kwargs):
  return retrieval.evaluate_split(jax.jit(features), None, split, mesh=sharding.data_mesh(),
                                  options=OPTIONS, batch_size=8, metric=metric, max_rank=5, post=post,
                                  spatial_fn=jax.jit(colour_maps), **kwargs)


def _relabelled(split, query=None, gallery=None):
  """The split with query / gallery records changed by `query(r)` / `gallery(r)` (dicts of fields)."""
  change = lambda records, fn: [dataclasses.replace(r, **fn(r)) for r in records] if fn else records
  return Split(split.train, change(split.query, query), change(split.gallery, gallery))


EVERY_OPTION = retrieval.PostProcessing(query_expansion="qe", qe_top_m=2, rerank=True, rerank_k1=4,
                                        rerank_k2=2, roc=True, cuhk03_single_shot=True, dsr=True)


@pytest.mark.parametrize("post", [retrieval.PostProcessing(), EVERY_OPTION], ids=["plain", "every_option"])
@pytest.mark.parametrize("damage,why", [
    (dict(query=lambda r: {"camid": 0}, gallery=lambda r: {"camid": 0}),
     "no query has a correct match .* every query and gallery image has camera 0"),
    (dict(query=lambda r: {"pid": r.pid + 1000}),
     r"no query has a correct match .* none of the 6 queries' ids \(e\.g\. 1100, 1101"),
])
def test_no_valid_query_is_refused_before_any_image_is_read(market_root, post, damage, why):
  split = _relabelled(datasets.get("market1501", market_root), **damage)
  for record in split.query + split.gallery:  # nothing may be decoded: the labels decide
    pathlib.Path(record.path).write_bytes(b"")
  with pytest.raises(EvaluationError, match="test set 'market1501': " + why):
    _evaluate(split, post=post, name="market1501")
  with pytest.raises(EvaluationError, match=why):
    retrieval.check_split(split, post)


def test_without_a_name_the_query_folder_names_the_set(market_root):
  split = _relabelled(datasets.get("market1501", market_root), query=lambda r: {"pid": 7})
  folder = pathlib.Path(split.query[0].path).parent
  with pytest.raises(EvaluationError, match=f"the test set with queries in {folder}: no query"):
    retrieval.check_split(split)


def test_an_empty_side_is_refused(market_root):
  split = datasets.get("market1501", market_root)
  with pytest.raises(EvaluationError, match="has 0 query and 25 gallery images"):
    retrieval.check_split(Split(split.train, [], split.gallery), name="luperson")


def test_some_valid_queries_are_scored_and_the_rest_skipped(market_root):
  split = datasets.get("market1501", market_root)
  # Two queries get an id that is not in the gallery: skipped, the other four are scored.
  changed = _relabelled(split, query=lambda r: {"pid": r.pid + 1000} if r.pid < 102 else {})
  results = _evaluate(changed)
  kept = Split(split.train, split.query[2:], split.gallery)
  assert results["num_valid_query"] == 4 and results["num_query"] == 6
  assert results["mAP"] == pytest.approx(_evaluate(kept)["mAP"])


def test_roc_needs_two_ids_and_its_picture_is_left_out(market_root, tmp_path):
  split = datasets.get("market1501", market_root)
  tmp_path = tmp_path / "pictures"
  one_id = Split([], [r for r in split.query if r.pid == 100], [r for r in split.gallery if r.pid == 100])
  with pytest.raises(EvaluationError, match="eval.roc needs query-gallery pairs of different ids"):
    _evaluate(one_id, post=retrieval.PostProcessing(roc=True), name="one")
  results = _evaluate(one_id, post=dataclasses.replace(EVERY_OPTION, roc=False, qe_top_m=1),
                      report=retrieval.ReportOptions(tmp_path, 1, 3))
  assert results["mAP"] == 100.0 and results["rerank"]["mAP"] == 100.0
  names = sorted(p.name for p in tmp_path.iterdir())
  assert names == ["distance_distribution.png", "rank_list_q00000_pid100.png"]  # no roc.png


@pytest.mark.parametrize("post,key", [
    (retrieval.PostProcessing(query_expansion="qe", qe_top_m=26), "eval.qe_top_m=26 asks for 26"),
    (retrieval.PostProcessing(query_expansion="alpha_qe", aqe_k=30), "eval.aqe_k=30 asks for 29"),
])
def test_query_expansion_beyond_the_gallery_is_a_config_error(market_root, post, key):
  with pytest.raises(ConfigError, match=key + " gallery neighbours per query, but test set 'm' "
                     "has 25 gallery images"):
    _evaluate(datasets.get("market1501", market_root), post=post, name="m")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_features_name_the_set_and_the_likely_cause(market_root, value):
  with pytest.raises(EvaluationError, match="test set 'market1501': NaN or inf in 6 of 6 query "
                     "features, 25 of 25 gallery features, so no ranking is possible; .*diverged "
                     "run .*negative BatchNorm running variance"):
    _evaluate(datasets.get("market1501", market_root), name="market1501",
              features=lambda s, x: colour_features(s, x) * value)


def test_finite_features_whose_distances_overflow(market_root):
  with pytest.raises(EvaluationError, match="the euclidean distances are NaN or inf though the "
                     "features are finite: feature values up to .*e\\+30 overflow float32"):
    _evaluate(datasets.get("market1501", market_root), metric="euclidean", name="m",
              features=lambda s, x: colour_features(s, x) * 1e30 + 1e30)


def test_cosine_features_whose_norms_overflow(market_root):
  # A norm of inf makes every normalised feature 0 and every distance 1: refused, not ranked.
  with pytest.raises(EvaluationError, match="test set 'm': the norms of 6 of 6 query features, 25 of "
                     "25 gallery features overflow float32 \\(values up to .*e\\+30\\)"):
    _evaluate(datasets.get("market1501", market_root), metric="cosine", name="m",
              features=lambda s, x: colour_features(s, x) * 1e30 + 1e30)
  # Large but representable norms still rank (the check is not a magnitude threshold).
  results = _evaluate(datasets.get("market1501", market_root), metric="cosine", name="m",
                      features=lambda s, x: colour_features(s, x) * 1e15 + 1e15)
  assert 0.0 <= results["mAP"] <= 100.0


def test_non_finite_dsr_maps(market_root):
  split = datasets.get("market1501", market_root)
  post = retrieval.PostProcessing(dsr=True)
  with pytest.raises(EvaluationError, match="NaN or inf in 6 of 6 query maps, 25 of 25 gallery maps"):
    retrieval.evaluate_split(jax.jit(colour_features), None, split, mesh=sharding.data_mesh(),
                             options=OPTIONS, batch_size=8, metric="cosine", post=post,
                             spatial_fn=jax.jit(lambda s, x: colour_maps(s, x) / 0.0 * 0.0))
