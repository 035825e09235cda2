"""Multi-class focal loss against a float64 loop reference, PyTorch gradients, and edge cases."""
import jax
import numpy as np
import pytest
import torch

from jreid.losses import LOSSES, cross_entropy, focal_loss

focal = jax.jit(focal_loss)
focal_grad = jax.jit(jax.value_and_grad(focal_loss))


def _numpy_focal(logits, labels, alpha, gamma):
  """Per sample: -alpha (1 - p_t)^gamma log p_t with p_t the softmax probability of the label."""
  logits = np.asarray(logits, np.float64)
  total = 0.0
  for i in range(len(logits)):
    z = logits[i] - logits[i].max()
    log_pt = z[labels[i]] - np.log(np.sum(np.exp(z)))
    total += -alpha * (1 - np.exp(log_pt)) ** gamma * log_pt
  return total / len(logits)


def _data(seed, b=12, k=7, scale=3.0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, k, size=b)
  labels[0] = k - 1  # make sure some classes appear once and some not at all
  labels[1:] = np.minimum(labels[1:], k - 2)
  return (rng.normal(size=(b, k)) * scale).astype(np.float32), labels


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (1.0, 0.5), (0.5, 5.0)])
def test_matches_loop_reference(alpha, gamma):
  logits, labels = _data(0)
  np.testing.assert_allclose(focal(logits, labels, alpha, gamma),
                             _numpy_focal(logits, labels, alpha, gamma), rtol=1e-5)


def test_gradients_match_torch():
  logits, labels = _data(1)
  loss, grad = focal_grad(logits, labels, 0.25, 2.0)
  z = torch.tensor(logits.astype(np.float64), requires_grad=True)
  log_pt = torch.log_softmax(z, 1).gather(1, torch.tensor(labels)[:, None])[:, 0]
  ref = (-0.25 * (1 - log_pt.exp()) ** 2 * log_pt).mean()
  ref.backward()
  np.testing.assert_allclose(loss, ref.item(), rtol=1e-5)
  np.testing.assert_allclose(grad, z.grad.numpy(), rtol=1e-4, atol=1e-7)


def test_alpha1_gamma0_is_cross_entropy():
  logits, labels = _data(2)
  np.testing.assert_allclose(focal(logits, labels, 1.0, 0.0), cross_entropy(logits, labels, 0.0),
                             rtol=1e-5)


def test_all_equal_logits_closed_form():
  k = 5
  logits = np.full((4, k), 2.0, np.float32)
  labels = np.array([0, 1, 1, 4])
  expected = -0.25 * (1 - 1 / k) ** 2 * np.log(1 / k)
  loss, grad = focal_grad(logits, labels, 0.25, 2.0)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  assert np.all(np.isfinite(grad))


def test_focusing_downweights_easy_samples():
  # A confident correct sample loses much more of its CE than a hard one.
  easy = np.array([[4.0, 0.0, 0.0]], np.float32)
  hard = np.array([[0.0, 2.0, 0.0]], np.float32)
  label = np.array([0])
  ratio_easy = focal(easy, label, 1.0, 2.0) / cross_entropy(easy, label, 0.0)
  ratio_hard = focal(hard, label, 1.0, 2.0) / cross_entropy(hard, label, 0.0)
  assert float(ratio_easy) < 0.01 < 0.5 < float(ratio_hard)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_gradients_finite_when_saturated(gamma):
  # p_t rounds to 1 in float32 (gap 200) and to 0 (gap -200).
  logits = np.array([[200.0, 0.0, 0.0], [0.0, 200.0, 0.0]], np.float32)
  labels = np.array([0, 0])
  loss, grad = focal_grad(logits, labels, 0.25, gamma)
  np.testing.assert_allclose(loss, _numpy_focal(logits, labels, 0.25, gamma), rtol=1e-5)
  assert np.all(np.isfinite(grad))
  assert LOSSES["focal"] is focal_loss
