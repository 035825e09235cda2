"""Cluster contrast's memory: hand-computed cases in the plane and float64 numpy references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.losses.cluster_memory import cluster_centroids, hardest_update, memory_contrastive_loss


def _unit(v):
  v = np.asarray(v, np.float64)
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _angle(degrees):
  return [np.cos(np.radians(degrees)), np.sin(np.radians(degrees))]


def test_centroids_by_hand():
  """Three clusters in the plane and an outlier that would pull cluster 0 if counted."""
  features = np.array([[1, 0], [0, -3], [5, 5], [-2, 0], [0, 1], [-1, 0]], np.float32)
  labels = np.array([0, 2, -1, 1, 0, 1])
  got = cluster_centroids(features, labels)
  expected = [[np.sqrt(0.5), np.sqrt(0.5)],  # mean (0.5, 0.5)
              [-1, 0],                        # mean (-1.5, 0)
              [0, -1]]                        # (0, -3)
  assert got.shape == (3, 2) and got.dtype == np.float32
  np.testing.assert_allclose(got, expected, atol=1e-7)


def test_centroids_every_point_an_outlier():
  assert cluster_centroids(np.ones((4, 3)), -np.ones(4, int)).shape == (0, 3)


@pytest.mark.parametrize("features,labels,match", [
    (np.ones((3, 2)), np.array([0, 2, 2]), r"0..2 with every id present, missing \[1\]"),
    (np.ones((3, 2)), np.array([0, -2, 1]), "must be >= -1"),
    (np.ones((3, 2)), np.array([0, 1]), "expected features"),
])
def test_centroids_reject_bad_labels(features, labels, match):
  with pytest.raises(ValueError, match=match):
    cluster_centroids(features, labels)


def _numpy_loss(features, labels, memory, temperature):
  """Row by row: -log softmax(x/|x| . m / t)[label], averaged over labels >= 0."""
  x = _unit(features)
  m = np.asarray(memory, np.float64)
  losses = []
  for i, label in enumerate(labels):
    if label < 0:
      continue
    logits = m @ x[i] / temperature
    losses.append(np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[label])
  return np.mean(losses) if losses else 0.0


def test_loss_by_hand():
  """x = (2, 0) with memory (1, 0), (0, 1) at t = 0.5: logits (2, 0), loss log(1 + e^-2)."""
  memory = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  loss = memory_contrastive_loss(jnp.array([[2.0, 0.0]]), jnp.array([0]), memory, temperature=0.5)
  np.testing.assert_allclose(loss, np.log1p(np.exp(-2.0)), rtol=1e-6)


@pytest.mark.parametrize("with_outliers", [False, True])
def test_loss_matches_numpy(with_outliers):
  rng = np.random.default_rng(0)
  features = rng.normal(size=(16, 8)).astype(np.float32) * 3
  labels = rng.integers(0, 5, 16)
  if with_outliers:
    labels[[2, 7, 11]] = -1
  memory = _unit(rng.normal(size=(5, 8))).astype(np.float32)
  got = memory_contrastive_loss(jnp.asarray(features), jnp.asarray(labels), jnp.asarray(memory))
  np.testing.assert_allclose(got, _numpy_loss(features, labels, memory, 0.05), rtol=1e-5)


def test_loss_gradient_reaches_features_not_memory():
  rng = np.random.default_rng(1)
  features = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
  labels = jnp.array([0, 1, 2, 0, 1, 2])
  memory = jnp.asarray(_unit(rng.normal(size=(3, 4))), jnp.float32)
  g_feat, g_mem = jax.grad(memory_contrastive_loss, argnums=(0, 2))(features, labels, memory)
  assert float(jnp.abs(g_feat).max()) > 0
  np.testing.assert_array_equal(g_mem, 0)


def test_loss_of_outliers_only_is_zero():
  loss = memory_contrastive_loss(jnp.ones((3, 2)), jnp.array([-1, -1, -1]), jnp.eye(2))
  np.testing.assert_array_equal(loss, 0.0)


def test_hardest_update_by_hand():
  """Cluster 0 sees samples at 10, 60 and -30 degrees from its entry (1, 0): 60 is the hardest.

  Cluster 1 sees one sample, at 45 degrees; cluster 2 none; the outlier at 180
  degrees is the least similar sample of all and must move nothing.
  """
  memory = np.array([[1, 0], [0, 1], [-1, 0]], np.float32)
  features = 3 * np.array([_angle(10), _angle(60), _angle(45), _angle(180), _angle(-30)], np.float32)
  labels = np.array([0, 0, 1, -1, 0])
  got = np.asarray(jax.jit(hardest_update)(memory, features, labels))
  expected = np.array([_unit([0.2 + 0.8 * 0.5, 0.8 * np.sqrt(0.75)]),
                       _unit([0.8 * np.sqrt(0.5), 0.2 + 0.8 * np.sqrt(0.5)]),
                       [-1, 0]])
  np.testing.assert_allclose(got, expected, atol=1e-6)


def _numpy_hardest_update(memory, features, labels, momentum):
  """The release's loop: per cluster of the batch, argmin of x.m, then the momentum step."""
  memory = np.array(memory, np.float64)
  x = _unit(features)
  for c in sorted(set(labels.tolist()) - {-1}):
    members = np.flatnonzero(labels == c)
    hardest = members[np.argmin(x[members] @ memory[c])]
    memory[c] = momentum * memory[c] + (1 - momentum) * x[hardest]
    memory[c] /= np.linalg.norm(memory[c])
  return memory


@pytest.mark.parametrize("momentum", [0.2, 0.9])
def test_hardest_update_matches_numpy(momentum):
  rng = np.random.default_rng(2)
  memory = _unit(rng.normal(size=(10, 6))).astype(np.float32)
  features = rng.normal(size=(32, 6)).astype(np.float32)
  labels = rng.integers(-1, 7, 32)  # clusters 7..9 absent, some outliers
  got = hardest_update(jnp.asarray(memory), jnp.asarray(features), jnp.asarray(labels), momentum)
  expected = _numpy_hardest_update(memory, features, labels, momentum)
  np.testing.assert_allclose(got, expected, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(got)[7:], memory[7:])


def test_unused_memory_rows_take_no_part():
  """A memory of capacity 5 with 3 clusters in use: the loss of the first 3 rows alone,
  and the spare rows get no gradient (they hold garbage, as after a smaller clustering)."""
  rng = np.random.default_rng(3)
  features = rng.normal(size=(6, 4)).astype(np.float32)
  labels = np.array([0, 2, 1, -1, 2, 0])
  used = _unit(rng.normal(size=(3, 4))).astype(np.float32)
  spare = 50 * rng.normal(size=(2, 4)).astype(np.float32)
  memory = jnp.asarray(np.concatenate([used, spare]))
  got = memory_contrastive_loss(jnp.asarray(features), jnp.asarray(labels), memory, 0.05,
                                num_clusters=jnp.int32(3))
  np.testing.assert_allclose(got, _numpy_loss(features, labels, used, 0.05), rtol=1e-5)
  grad = jax.grad(lambda f: memory_contrastive_loss(f, jnp.asarray(labels), memory, 0.05,
                                                    num_clusters=3))(jnp.asarray(features))
  assert np.isfinite(np.asarray(grad)).all()
