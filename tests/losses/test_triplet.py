"""Batch-hard triplet loss against a loop reference, edge cases and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.losses import LOSSES, batch_hard_triplet

# Jitted once per shape and flags: cheaper than dispatching each op eagerly.
triplet = jax.jit(batch_hard_triplet, static_argnames=("soft_margin", "normalize"))
triplet_grad = jax.jit(jax.value_and_grad(batch_hard_triplet),
                       static_argnames=("soft_margin", "normalize"))


def _numpy_triplet(x, labels, margin=0.3, soft_margin=False, normalize=False):
  """Loops over anchors; distances straight from differences, clamped as FastReID."""
  x = np.asarray(x, np.float64)
  if normalize:
    x = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
  n = len(x)
  total = 0.0
  for i in range(n):
    d = [np.sqrt(max(np.sum((x[i] - x[j]) ** 2), 1e-12)) for j in range(n)]
    d_ap = max(d[j] for j in range(n) if labels[j] == labels[i])
    negatives = [d[j] for j in range(n) if labels[j] != labels[i]]
    d_an = min(negatives) if negatives else 1e9
    if soft_margin:
      total += np.log1p(np.exp(d_ap - d_an))
    else:
      total += max(d_ap - d_an + margin, 0.0)
  return total / n


PK_LABELS = np.repeat(np.arange(4), 4)  # 4 identities x 4 instances
SINGLETON_LABELS = np.array([0, 0, 0, 1, 1, 2, 3, 3])  # identity 2 appears once


@pytest.mark.parametrize("labels", [PK_LABELS, SINGLETON_LABELS], ids=["pk", "singleton"])
@pytest.mark.parametrize("soft_margin", [False, True])
@pytest.mark.parametrize("normalize", [False, True])
def test_matches_loop_reference(labels, soft_margin, normalize):
  rng = np.random.default_rng(len(labels))
  # Scale so that margins are active for some anchors and not others.
  scale = 1.0 if normalize else 0.15
  x = (rng.normal(size=(len(labels), 16)) * scale + 0.5).astype(np.float32)
  got = triplet(x, labels, 0.3, soft_margin=soft_margin, normalize=normalize)
  ref = _numpy_triplet(x, labels, 0.3, soft_margin, normalize)
  assert ref > 0
  np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_lone_anchor_has_zero_positive_distance():
  # Identity 1 is alone: its d_ap is the clamp floor 1e-6 and its loss is
  # relu(1e-6 - d_an + margin); choose d_an = 0.2 < margin to see it.
  x = np.array([[0.0, 0.0], [0.2, 0.0], [0.0, 1.0], [0.0, 1.1]], np.float32)
  labels = np.array([0, 1, 0, 0])
  ref = _numpy_triplet(x, labels)
  np.testing.assert_allclose(triplet(x, labels), ref, rtol=1e-5)
  per_anchor_1 = 1e-6 - 0.2 + 0.3
  assert ref > per_anchor_1 / 4


def test_all_equal_features():
  x = np.full((6, 8), 0.5, np.float32)
  labels = np.array([0, 0, 1, 1, 2, 2])
  # Every distance is the clamp floor: each anchor contributes the full margin.
  np.testing.assert_allclose(triplet(x, labels, 0.3), 0.3, rtol=1e-5)
  np.testing.assert_allclose(triplet(x, labels, 0.3), _numpy_triplet(x, labels, 0.3), rtol=1e-5)
  np.testing.assert_allclose(triplet(x, labels, soft_margin=True), np.log(2), rtol=1e-5)


def test_no_negatives_gives_zero_loss_not_nan():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(5, 4)).astype(np.float32)
  labels = np.zeros(5, int)
  for soft in (False, True):
    loss, grad = triplet_grad(x, labels, 0.3, soft_margin=soft)
    assert float(loss) == 0.0
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("normalize", [False, True])
def test_gradients_finite_for_identical_embeddings(normalize):
  x = np.zeros((4, 8), np.float32)
  x[2:] = 1.0  # two pairs of identical embeddings, one of them all-zero
  for labels in (np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])):
    _, grad = triplet_grad(x, labels, 0.3, normalize=normalize)
    assert np.all(np.isfinite(grad)), labels
  _, grad = triplet_grad(jnp.full((4, 8), 0.5), np.array([0, 0, 1, 1]))
  assert np.all(np.isfinite(grad))
  assert LOSSES["triplet"] is batch_hard_triplet


@pytest.mark.parametrize("soft_margin", [False, True])
def test_normalize_equals_reference_on_normalised_inputs(soft_margin):
  # normalize=True must be exactly "L2-normalise, then the plain loss": check
  # it against the loop reference fed rows divided by their norms (the
  # reference's own normalize flag off), and its invariance to row scales.
  rng = np.random.default_rng(11)
  x = (rng.normal(size=(len(SINGLETON_LABELS), 16)) + 0.5).astype(np.float32)
  x64 = x.astype(np.float64)
  unit = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
  got = triplet(x, SINGLETON_LABELS, 0.3, soft_margin=soft_margin, normalize=True)
  ref = _numpy_triplet(unit, SINGLETON_LABELS, 0.3, soft_margin, normalize=False)
  assert ref > 0
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  scales = rng.uniform(0.1, 10.0, size=(len(x), 1)).astype(np.float32)
  np.testing.assert_allclose(
      triplet(x * scales, SINGLETON_LABELS, 0.3, soft_margin=soft_margin, normalize=True), ref, rtol=1e-5)
  # Without normalize the row scales change the loss, so the check above has teeth.
  assert abs(float(triplet(x * scales, SINGLETON_LABELS, 0.3, soft_margin=soft_margin)) - ref) > 1e-3
