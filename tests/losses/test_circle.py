"""Pairwise circle loss against a float64 loop reference, a PyTorch re-implementation, and edge cases."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jreid.losses import LOSSES, pairwise_circle

circle = jax.jit(pairwise_circle)
circle_grad = jax.jit(jax.value_and_grad(pairwise_circle))


def _softplus(z):
  return max(z, 0.0) + np.log1p(np.exp(-abs(z)))


def _logsumexp(v):
  v = np.asarray(v)
  return v.max() + np.log(np.sum(np.exp(v - v.max())))


def _numpy_circle(x, labels, m=0.25, gamma=128.0, anchors=None):
  """Loops over anchors; Eq. 6 with Eq. 8's weights; an empty sum makes the anchor's loss log(1 + 0) = 0.

  `anchors` restricts the sum (still divided by the batch size) to those rows.
  """
  x = np.asarray(x, np.float64)
  x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  n = len(x)
  total = 0.0
  for i in range(n) if anchors is None else anchors:
    pos = [x[i] @ x[j] for j in range(n) if j != i and labels[j] == labels[i]]
    neg = [x[i] @ x[j] for j in range(n) if labels[j] != labels[i]]
    if not pos or not neg:
      continue
    lp = [-gamma * max(1 + m - s, 0.0) * (s - (1 - m)) for s in pos]
    ln = [gamma * max(s + m, 0.0) * (s - m) for s in neg]
    total += _softplus(_logsumexp(lp) + _logsumexp(ln))
  return total / n


def _torch_circle_grad(x, labels, m, gamma):
  """FastReID-style masked form in PyTorch (alphas detached, -1e8 masks); returns loss and d/dx."""
  x = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
  t = torch.tensor(labels)
  sim = torch.nn.functional.normalize(x) @ torch.nn.functional.normalize(x).T
  is_pos = (t[:, None] == t[None, :]).double() - torch.eye(len(t), dtype=torch.float64)
  is_neg = (t[:, None] != t[None, :]).double()
  alpha_p = torch.clamp_min(1 + m - sim.detach(), 0)
  alpha_n = torch.clamp_min(sim.detach() + m, 0)
  logit_p = -gamma * alpha_p * (sim - (1 - m)) - 1e8 * (1 - is_pos)
  logit_n = gamma * alpha_n * (sim - m) - 1e8 * (1 - is_neg)
  loss = torch.nn.functional.softplus(torch.logsumexp(logit_p, 1) + torch.logsumexp(logit_n, 1)).mean()
  loss.backward()
  return loss.item(), x.grad.numpy()


PK_LABELS = np.repeat(np.arange(4), 4)
SINGLETON_LABELS = np.array([0, 0, 0, 1, 1, 2, 3, 3])  # identity 2 appears once


def _data(labels, seed):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(labels.max() + 1, 16))
  return (centres[labels] + 0.8 * rng.normal(size=(len(labels), 16))).astype(np.float32)


@pytest.mark.parametrize("labels", [PK_LABELS, SINGLETON_LABELS], ids=["pk", "singleton"])
@pytest.mark.parametrize("margin,gamma", [(0.25, 128.0), (0.4, 16.0)])
def test_matches_loop_reference(labels, margin, gamma):
  x = _data(labels, len(labels))
  ref = _numpy_circle(x, labels, margin, gamma)
  assert ref > 0
  np.testing.assert_allclose(circle(x, labels, margin, gamma), ref, rtol=1e-5)


@pytest.mark.parametrize("labels", [PK_LABELS, SINGLETON_LABELS], ids=["pk", "singleton"])
def test_gradients_match_torch(labels):
  # gamma = 16 keeps the gradient spread over several pairs; the torch
  # reference stops the alphas' gradients, so an undetached alpha fails here.
  x = _data(labels, 5)
  loss, grad = circle_grad(x, labels, 0.25, 16.0)
  ref_loss, ref_grad = _torch_circle_grad(x, labels, 0.25, 16.0)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-6)


def test_singleton_anchor_contributes_zero_but_counts():
  # Identity 2's lone sample has no positive: its term is 0, the other seven
  # (which still see it as a negative) are averaged over all 8 anchors, as
  # FastReID's mean does, not over the 7 valid ones.
  x = _data(SINGLETON_LABELS, 7)
  terms = [_numpy_circle(x, SINGLETON_LABELS, anchors=[i]) * len(x) for i in range(len(x))]
  assert terms[5] == 0.0 and all(t > 0 for i, t in enumerate(terms) if i != 5)
  got = float(circle(x, SINGLETON_LABELS))
  np.testing.assert_allclose(got, sum(terms) / 8, rtol=1e-5)
  assert abs(got - sum(terms) / 7) > 1e-3 * got


def test_all_equal_features_closed_form():
  # Every similarity is 1: alpha_p = m, alpha_n = 1 + m, so each anchor with
  # P positives and N negatives has softplus(-gamma m^2 + log P + gamma (1 - m^2) + log N).
  labels = np.array([0, 0, 0, 1, 1, 2])
  x = np.full((6, 8), 0.3, np.float32)
  m, gamma = 0.25, 128.0
  expected = []
  for i in range(6):
    p = np.sum(labels == labels[i]) - 1
    n = np.sum(labels != labels[i])
    expected.append(_softplus(-gamma * m * m + np.log(p) + gamma * (1 - m * m) + np.log(n)) if p else 0.0)
  loss, grad = circle_grad(x, labels, m, gamma)
  np.testing.assert_allclose(loss, np.mean(expected), rtol=1e-5)
  np.testing.assert_allclose(loss, _numpy_circle(x, labels, m, gamma), rtol=1e-5)
  assert np.all(np.isfinite(grad))


def test_no_negatives_or_no_positives_give_zero_not_nan():
  x = _data(PK_LABELS, 3)[:5]
  for labels in (np.zeros(5, int), np.arange(5)):  # one label; all distinct
    loss, grad = circle_grad(x, labels, 0.25, 128.0)
    assert float(loss) == 0.0
    assert np.all(np.isfinite(grad)) and not np.any(grad)


def test_gradients_finite_for_zero_and_identical_embeddings():
  x = np.zeros((4, 8), np.float32)
  x[2:] = 1.0  # a pair of all-zero embeddings and a pair of identical ones
  for labels in (np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])):
    loss, grad = circle_grad(x, labels, 0.25, 128.0)
    assert np.isfinite(loss) and np.all(np.isfinite(grad)), labels
  assert LOSSES["pairwise_circle"] is pairwise_circle
  assert jnp.isfinite(circle(x, np.array([0, 0, 1, 1])))
