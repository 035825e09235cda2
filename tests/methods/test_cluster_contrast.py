"""Cluster contrast's epoch start against a hand-computed case, its refusals, and its step.

The hand case: three tight groups of four points around e1, e2, e3 and one
point far from all of them. With k1 = 4 a point's k-reciprocal set is its
own group (the outlier's is itself alone: no group point has it among its 4
nearest), so the Jaccard distance is ~0 within a group and 1 elsewhere, and
DBSCAN (eps 0.5, min_samples 2) numbers the groups 0, 1, 2 in index order
and marks the lone point -1.
"""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jreid import config_blocks, methods
from jreid.data.records import Record
from jreid.errors import ClusteringError, ConfigError
from jreid.evaluation.distance import normalise_rows
from jreid.losses.cluster_memory import hardest_update
from jreid.methods import cluster_contrast
from jreid.methods.cluster_contrast import ClusterContrast, ClusterState
from jreid.train import loop, update

GROUPS = ([0, 1, 2, 3], [5, 6, 7, 8], [9, 10, 11, 12])
LONE = 4


def _hand_features():
  rng = np.random.default_rng(0)
  features = np.zeros((13, 4), np.float32)
  for axis, members in enumerate(GROUPS):
    features[members, axis] = 2.0  # unnormalised: the hook normalises
  features[LONE] = [-1, -1, -1, 3]
  return features + 1e-3 * rng.normal(size=features.shape).astype(np.float32)


def _settings(**overrides):
  return cluster_contrast.cluster_config(**{**dict(k1=4, k2=1, eps=0.5, min_samples=2,
                                                   max_clusters=6), **overrides})


def _state(capacity=6, dim=4, num_clusters=0):
  return ClusterState(step=jnp.zeros((), jnp.int32), params={}, batch_stats={}, opt_state=(),
                      memory=jnp.full((capacity, dim), 7.0), num_clusters=jnp.int32(num_clusters))


def _context(features, logs):
  records = [Record(f"img{i}.jpg", pid=100 + i // 3, camid=i % 2) for i in range(len(features))]
  return loop.EpochContext(records=records, epochs=None, seed=0, log=logs.append,
                           _extract=lambda state, recs: features[:len(recs)])


def test_pseudo_labels_of_the_hand_case():
  labels = cluster_contrast.pseudo_labels(normalise_rows(_hand_features()), _settings())
  expected = np.full(13, -1)
  for cluster, members in enumerate(GROUPS):
    expected[members] = cluster
  np.testing.assert_array_equal(labels, expected)


def test_epoch_start_relabels_and_rebuilds_the_memory():
  features, logs = _hand_features(), []
  impl = ClusterContrast(model=None, update=None, settings=_settings(), ids_per_batch=2)
  context = _context(features, logs)
  state, records = impl.on_epoch_start(_state(), 0, context)
  # The lone point is dropped; every other record keeps its path with its group's number.
  assert [r.path for r in records] == [f"img{i}.jpg" for i in range(13) if i != LONE]
  assert [r.pid for r in records] == [0] * 4 + [1] * 4 + [2] * 4
  assert [r.camid for r in records] == [i % 2 for i in range(13) if i != LONE]
  # Memory: the normalised means of the normalised members (~ e1, e2, e3), spare rows zeroed.
  unit = features / np.linalg.norm(features, axis=1, keepdims=True)
  means = np.stack([unit[m].mean(0) for m in GROUPS])
  expected = np.zeros((6, 4), np.float32)
  expected[:3] = means / np.linalg.norm(means, axis=1, keepdims=True)
  np.testing.assert_allclose(np.asarray(state.memory), expected, atol=1e-6)
  np.testing.assert_allclose(np.asarray(state.memory)[:3], np.eye(4)[:3], atol=1e-2)
  assert int(state.num_clusters) == 3
  # Purity against the records' own ids (100 + i // 3): {0..3} has 3 of id 100, {5..8} 3 of
  # id 102 (6, 7, 8), {9..12} 3 of id 103: 9 of the 12 clustered images.
  assert "3 clusters, 1 outliers" in logs[0] and "purity against data.train's ids 75.0%" in logs[0]


def test_every_point_an_outlier_at_the_first_epoch_is_a_clear_error():
  features, logs = _hand_features(), []
  impl = ClusterContrast(model=None, update=None, settings=_settings(min_samples=5), ids_per_batch=2)
  with pytest.raises(ClusteringError, match=r"epoch 1: .* 0 clusters, 13 outliers.*raise cluster.eps"):
    impl.on_epoch_start(_state(), 0, _context(features, logs))


def test_a_later_empty_clustering_keeps_the_previous_labels_and_memory():
  features, logs = _hand_features(), []
  impl = ClusterContrast(model=None, update=None, settings=_settings(min_samples=5), ids_per_batch=2)
  before = _state(num_clusters=3)
  after, records = impl.on_epoch_start(before, 4, _context(features, logs))
  assert records is None and after is before
  assert logs[0].startswith("warning: epoch 5:") and "keeping the previous epoch's 3" in logs[0]


def test_too_few_clusters_for_a_batch_counts_as_empty():
  impl = ClusterContrast(model=None, update=None, settings=_settings(), ids_per_batch=4)
  with pytest.raises(ClusteringError, match="3 clusters.*a batch needs 4 pseudo-identities"):
    impl.on_epoch_start(_state(), 0, _context(_hand_features(), []))


def test_more_clusters_than_the_memory_holds_names_max_clusters():
  impl = ClusterContrast(model=None, update=None, settings=_settings(max_clusters=2), ids_per_batch=2)
  with pytest.raises(ConfigError, match="more than cluster.max_clusters=2"):
    impl.on_epoch_start(_state(capacity=2), 0, _context(_hand_features(), []))


def test_purity_by_hand():
  labels = np.array([0, 0, 0, 1, 1, -1])
  truth = np.array([5, 5, 7, 7, 7, 5])
  assert cluster_contrast.purity(labels, truth) == pytest.approx(4 / 5)


def test_a_step_trains_against_the_memory_then_moves_it_to_the_hardest_samples():
  config = config_blocks.load_config("configs/cluster_contrast.py:smoke")
  method = methods.build(config, 0, update.factory(config, config.train.steps))
  impl = method.impl
  images = jax.random.normal(jax.random.PRNGKey(0), (8, 32, 16, 3))
  state = method.init(jax.random.PRNGKey(1), images)
  assert "classifier" not in str(jax.tree_util.tree_structure(state.params))
  dim = state.memory.shape[1]
  memory = np.zeros((64, dim), np.float32)
  memory[:3] = np.eye(3, dim)
  state = state.replace(memory=jnp.asarray(memory), num_clusters=jnp.int32(3))
  labels = jnp.array([0, 0, 1, 1, 2, 2, 0, 1])
  batch = {"image": images, "label": labels}
  rng = jax.random.PRNGKey(2)
  (_, (_, parts)) = impl.losses(state.params, state.batch_stats, state.memory, state.num_clusters,
                                batch, rng)
  new_state, measurements = jax.jit(method.train_step)(state, batch, rng)
  expected = hardest_update(jnp.asarray(memory), parts["feature"], labels, 0.2)
  np.testing.assert_allclose(np.asarray(new_state.memory), np.asarray(expected), atol=2e-5)  # jit vs eager
  np.testing.assert_array_equal(np.asarray(new_state.memory)[3:], 0)
  assert np.isfinite(float(measurements["loss"])) and int(new_state.step) == 1
