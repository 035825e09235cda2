"""Distillation losses against PyTorch written from the papers' code, hand cases and gradients."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jreid.losses.distill import logit_l1, pkt, symmetric_kl

RTOL = 1e-5


def torch_symmetric_kl(s, t, temperature=16.0):
  """FastReID's `Distiller.jsdiv_loss`, restated with torch ops."""
  def kldiv(y_s, y_t):
    return (F.kl_div(F.log_softmax(y_s / temperature, dim=1), F.softmax(y_t / temperature, dim=1),
                     reduction="sum") * temperature ** 2 / y_s.shape[0])
  return (kldiv(s, t.detach()) + kldiv(t.detach(), s)) / 2


def torch_pkt(s, t, eps=1e-7):
  """PKT's reference formulation: normalise, (cos + 1) / 2, row-normalise, mean KL(t || s)."""
  def probabilities(x):
    x = x / (torch.sqrt(torch.sum(x ** 2, dim=1, keepdim=True)) + eps)
    similarity = (x @ x.T + 1.0) / 2.0
    return similarity / similarity.sum(dim=1, keepdim=True)
  p_s, p_t = probabilities(s), probabilities(t.detach())
  return torch.mean(p_t * torch.log((p_t + eps) / (p_s + eps)))


def torch_l1(s, t):
  return F.l1_loss(s, t.detach())


CASES = {"logit_l1": (logit_l1, torch_l1), "symmetric_kl": (symmetric_kl, torch_symmetric_kl),
         "pkt": (pkt, torch_pkt)}


def _pair(seed, shape=(8, 12), scale=3.0):
  rng = np.random.default_rng(seed)
  return (rng.normal(0, scale, shape).astype(np.float32), rng.normal(0, scale, shape).astype(np.float32))


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch_value_and_gradient(name):
  ours, reference = CASES[name]
  s, t = _pair(1)
  value, (grad_s, grad_t) = jax.jit(jax.value_and_grad(ours, argnums=(0, 1)))(s, t)
  ts = torch.tensor(s, dtype=torch.float64, requires_grad=True)
  tt = torch.tensor(t, dtype=torch.float64, requires_grad=True)
  expected = reference(ts, tt)
  expected.backward()
  np.testing.assert_allclose(value, expected.item(), rtol=RTOL)
  np.testing.assert_allclose(grad_s, ts.grad.numpy(), rtol=1e-4, atol=1e-7)
  assert not np.any(grad_t)  # the teacher is never trained
  assert tt.grad is None or not tt.grad.any()


@pytest.mark.parametrize("name", sorted(CASES))
def test_identical_student_and_teacher_is_zero(name):
  s, _ = _pair(2)
  assert abs(float(jax.jit(CASES[name][0])(s, s))) < 1e-6


def test_symmetric_kl_other_temperature_matches_torch():
  s, t = _pair(3, shape=(4, 5))
  expected = torch_symmetric_kl(torch.tensor(s, dtype=torch.float64),
                                torch.tensor(t, dtype=torch.float64), temperature=4.0)
  np.testing.assert_allclose(symmetric_kl(s, t, temperature=4.0), expected.item(), rtol=RTOL)


def test_logit_l1_hand_case():
  s = jnp.array([[1.0, 2.0], [3.0, 4.0]])
  t = jnp.array([[0.0, 2.0], [5.0, 4.0]])
  np.testing.assert_allclose(logit_l1(s, t), (1 + 0 + 2 + 0) / 4, rtol=RTOL)


def test_symmetric_kl_hand_case():
  # Row 1: p_s = (1/2, 1/2), p_t = (3/4, 1/4); row 2 agrees. T = 1, so no T^2 factor.
  s = jnp.array([[0.0, 0.0], [1.0, 2.0]])
  t = jnp.array([[math.log(3.0), 0.0], [1.0, 2.0]])
  kl_ts = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
  kl_st = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
  np.testing.assert_allclose(symmetric_kl(s, t, temperature=1.0), (kl_ts + kl_st) / 2 / 2, rtol=RTOL)


def test_pkt_hand_case():
  # Student: orthogonal, rows (2/3, 1/3) and (1/3, 2/3); teacher: parallel, rows (1/2, 1/2).
  s = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  t = jnp.array([[1.0, 0.0], [2.0, 0.0]])
  expected = 2 * (0.5 * math.log(0.5 / (2 / 3)) + 0.5 * math.log(0.5 / (1 / 3))) / 4
  np.testing.assert_allclose(pkt(s, t), expected, rtol=RTOL)
  np.testing.assert_allclose(expected, math.log(9 / 8) / 4, rtol=1e-12)
