"""Margin softmax logits against a float64 loop reference and a PyTorch re-implementation."""
import math

import jax
import numpy as np
import pytest
import torch

from jreid.losses import LOSSES, arcface_logits, circle_logits, cosface_logits, cross_entropy
from jreid.losses.margin import cosine_logits


def _on_features(margin_fn):
  """(features, kernel, labels, s, m) -> margin logits, as a cosine head feeds them."""
  def logits(x, w, labels, s=64.0, m=None):
    kwargs = {} if m is None else {"margin": m}
    return margin_fn(cosine_logits(x, w), labels, scale=s, **kwargs)
  return logits


# Jitted: compiling once per shape is cheaper than dispatching each op eagerly.
HEADS = {name: jax.jit(_on_features(fn)) for name, fn in
         [("arcface", arcface_logits), ("cosface", cosface_logits), ("circle", circle_logits)]}
DEFAULT_MARGIN = {"arcface": 0.5, "cosface": 0.35, "circle": 0.35}


def _numpy_logits(kind, x, w, labels, s, m):
  """Element by element from the papers' formulas; ArcFace via arccos, not the cos/sin expansion."""
  x = np.asarray(x, np.float64)
  w = np.asarray(w, np.float64)
  out = np.zeros((len(x), w.shape[1]))
  for i in range(len(x)):
    xi = x[i] / max(np.linalg.norm(x[i]), 1e-12)
    for k in range(w.shape[1]):
      c = float(xi @ (w[:, k] / max(np.linalg.norm(w[:, k]), 1e-12)))
      target = k == labels[i]
      if kind == "cosface":
        out[i, k] = s * (c - m) if target else s * c
      elif kind == "arcface":
        theta = math.acos(min(max(c, -1.0), 1.0))
        if not target:
          out[i, k] = s * c
        elif theta + m <= math.pi:
          out[i, k] = s * math.cos(theta + m)
        else:
          out[i, k] = s * (c - m * math.sin(m))
      else:
        if target:
          out[i, k] = s * max(1 + m - c, 0.0) * (c - (1 - m))
        else:
          out[i, k] = s * max(c + m, 0.0) * (c - m)
  return out


def _torch_loss(kind, x, w, labels, s, m):
  """FastReID-style PyTorch head + plain CE, with (K, D) weights; returns loss and grads."""
  x = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
  w = torch.tensor(np.asarray(w, np.float64).T.copy(), requires_grad=True)
  cos = torch.nn.functional.normalize(x) @ torch.nn.functional.normalize(w).T
  hot = torch.nn.functional.one_hot(torch.tensor(labels), cos.shape[1]).bool()
  if kind == "cosface":
    logits = s * (cos - m * hot)
  elif kind == "arcface":
    theta = torch.acos(cos.clamp(-1 + 1e-12, 1 - 1e-12))
    arc = torch.where(theta + m <= math.pi, torch.cos(theta + m), cos - m * math.sin(m))
    logits = s * torch.where(hot, arc, cos)
  else:
    alpha_p = torch.clamp_min(1 + m - cos.detach(), 0)
    alpha_n = torch.clamp_min(cos.detach() + m, 0)
    logits = s * torch.where(hot, alpha_p * (cos - (1 - m)), alpha_n * (cos - m))
  loss = torch.nn.functional.cross_entropy(logits, torch.tensor(labels))
  loss.backward()
  return loss.item(), x.grad.numpy(), w.grad.numpy().T


def _loss(kind, x, w, labels, s, m):
  return cross_entropy(HEADS[kind](x, w, labels, s, m), labels, 0.0)


_loss_grad = jax.jit(jax.value_and_grad(_loss, argnums=(1, 2)), static_argnums=0)


def _data(seed, b=8, d=16, k=6):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(b, d)).astype(np.float32)
  w = rng.normal(size=(d, k)).astype(np.float32)
  labels = rng.integers(0, k, size=b)
  # Pull each feature towards its class so target cosines span a wide range.
  x += 0.6 * w[:, labels].T
  return x, w, labels


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_logits_match_loop_reference(kind):
  x, w, labels = _data(0)
  m = DEFAULT_MARGIN[kind]
  got = HEADS[kind](x, w, labels, 64.0, m)
  ref = _numpy_logits(kind, x, w, labels, 64.0, m)
  # float32 cosines carry ~1e-7 absolute error, times s = 64.
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_loss_and_gradients_match_torch(kind):
  # The torch reference detaches CircleSoftmax's alphas (Sun et al. Sec. 3.2),
  # so an undetached alpha here would fail the gradient check.
  # s = 16 keeps the softmax away from saturation so gradients are informative.
  x, w, labels = _data(1)
  m = DEFAULT_MARGIN[kind]
  loss, (gx, gw) = _loss_grad(kind, x, w, labels, 16.0, m)
  ref_loss, ref_gx, ref_gw = _torch_loss(kind, x, w, labels, 16.0, m)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  np.testing.assert_allclose(gx, ref_gx, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(gw, ref_gw, rtol=1e-4, atol=1e-6)


def test_arcface_fallback_past_pi_minus_m():
  # Feature opposite its class centre: theta = pi, so theta + m > pi.
  w = np.eye(3, dtype=np.float32)
  x = -w[:, :2].T.copy()
  labels = np.array([0, 1])
  got = np.asarray(HEADS["arcface"](x, w, labels, 64.0, 0.5))
  np.testing.assert_allclose(got[[0, 1], [0, 1]], 64.0 * (-1.0 - 0.5 * math.sin(0.5)), rtol=1e-5)
  # Just inside theta + m <= pi the plain cos(theta + m) applies.
  theta = math.pi - 0.5 - 0.01
  x = np.array([[math.cos(theta), math.sin(theta), 0.0]], np.float32)
  np.testing.assert_allclose(HEADS["arcface"](x, w, np.array([0]))[0, 0],
                             64.0 * math.cos(theta + 0.5), rtol=1e-5)


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_no_label_means_no_margin(kind):
  x, w, _ = _data(3)
  labels = np.full(len(x), -1)
  ref = _numpy_logits(kind, x, w, labels, 64.0, DEFAULT_MARGIN[kind])
  np.testing.assert_allclose(HEADS[kind](x, w, labels), ref, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_gradients_finite_at_degenerate_inputs(kind):
  m = DEFAULT_MARGIN[kind]
  w = np.eye(4, dtype=np.float32)
  # All features equal and exactly on class 0's centre (cos = 1), one of them
  # the only sample of its class; plus an all-zero feature and a zero weight.
  x = np.tile(w[:, :1].T, (4, 1))
  x[3] = 0.0
  w[:, 3] = 0.0
  labels = np.array([0, 0, 1, 2])
  loss, (gx, gw) = _loss_grad(kind, x, w, labels, 64.0, m)
  assert np.isfinite(loss)
  assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gw))
  np.testing.assert_allclose(HEADS[kind](x, w, labels, 64.0, m),
                             _numpy_logits(kind, x, w, labels, 64.0, m), rtol=1e-5, atol=2e-5)


def test_registered():
  assert LOSSES["arcface_logits"] is arcface_logits
  assert LOSSES["cosface_logits"] is cosface_logits
  assert LOSSES["circle_logits"] is circle_logits
