"""Label-smoothed cross-entropy against a loop reference and optax."""
import jax
import numpy as np
import optax
import pytest

from jreid.losses import LOSSES, cross_entropy


def _numpy_ce(logits, labels, eps):
  """Per sample: -sum_k q_k log p_k with q = 1 - eps on the label, eps / (K - 1) elsewhere."""
  b, k = logits.shape
  total = 0.0
  for i in range(b):
    z = logits[i] - logits[i].max()
    log_p = z - np.log(np.sum(np.exp(z)))
    for c in range(k):
      q = 1 - eps if c == labels[i] else eps / (k - 1)
      total -= q * log_p[c]
  return total / b


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_matches_loop_reference(eps):
  rng = np.random.default_rng(0)
  logits = (rng.normal(size=(8, 11)) * 3).astype(np.float32)
  labels = rng.integers(0, 11, size=8)
  np.testing.assert_allclose(cross_entropy(logits, labels, eps),
                             _numpy_ce(logits.astype(np.float64), labels, eps), rtol=1e-5)


def test_eps0_equals_optax():
  rng = np.random.default_rng(1)
  logits = (rng.normal(size=(16, 5)) * 4).astype(np.float32)
  labels = rng.integers(0, 5, size=16)
  ref = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  np.testing.assert_allclose(cross_entropy(logits, labels, 0.0), ref, rtol=1e-5)


def test_smoothing_is_fastreid_form_not_uniform_over_k():
  # With uniform logits every form gives log K; with a confident correct logit
  # FastReID's eps/(K-1) and optax's eps/K smoothing differ.
  logits = np.array([[5.0, 0.0, 0.0, 0.0]], np.float32)
  labels = np.array([0])
  ours = cross_entropy(logits, labels, 0.1)
  uniform = optax.softmax_cross_entropy(logits, optax.smooth_labels(np.eye(4)[labels], 0.1))[0]
  np.testing.assert_allclose(ours, _numpy_ce(logits.astype(np.float64), labels, 0.1), rtol=1e-5)
  assert abs(float(ours) - float(uniform)) > 1e-3


def test_gradient_is_softmax_minus_target():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(3, 4)).astype(np.float32)
  labels = np.array([0, 3, 1])
  grad = jax.grad(cross_entropy)(logits, labels, 0.1)
  p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  q = np.full((3, 4), 0.1 / 3)
  q[np.arange(3), labels] = 0.9
  np.testing.assert_allclose(grad, (p - q) / 3, rtol=1e-5, atol=1e-7)
  assert LOSSES["cross_entropy"] is cross_entropy


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_all_equal_logits_and_single_sample_classes(eps):
  # Equal logits predict 1/K for every class: -sum_k q_k log(1/K) = log K whatever the smoothing,
  # and every label here is the only sample of its class.
  logits = np.full((3, 5), 2.5, np.float32)
  labels = np.array([0, 3, 4])
  np.testing.assert_allclose(cross_entropy(logits, labels, eps), np.log(5.0), rtol=1e-6)
  np.testing.assert_allclose(cross_entropy(logits, labels, eps), _numpy_ce(logits, labels, eps),
                             rtol=1e-6)
