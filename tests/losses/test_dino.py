"""DINO's loss, centre, teacher momentum, EMA and per-parameter clipping against numpy / PyTorch references."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.core import ema
from jreid.losses import dino
from jreid.train import optim


def _log_softmax(x):
  x = x - x.max(axis=-1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _reference_loss(student, teacher, center, student_temp, teacher_temp):
  """DINOLoss.forward written out: every (teacher crop i, student crop j != i) pair, equally weighted."""
  student, teacher = student.astype(np.float64), teacher.astype(np.float64)
  p_t = np.exp(_log_softmax((teacher - center) / teacher_temp))
  log_p_s = _log_softmax(student / student_temp)
  total, terms = 0.0, 0
  for i in range(teacher.shape[0]):
    for j in range(student.shape[0]):
      if i == j:
        continue
      total += np.mean(-np.sum(p_t[i] * log_p_s[j], axis=-1))
      terms += 1
  return total / terms, terms


def _case(seed=0, n_crops=4, n_global=2, batch=3, classes=5):
  rng = np.random.default_rng(seed)
  student = rng.normal(size=(n_crops, batch, classes)).astype(np.float32)
  teacher = rng.normal(size=(n_global, batch, classes)).astype(np.float32)
  center = rng.normal(scale=0.3, size=(classes,)).astype(np.float32)
  return student, teacher, center


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_and_batch_center_equal_the_numpy_pair_loop(seed):
  student, teacher, center = _case(seed)
  loss, batch_center = dino.dino_loss(student, teacher, center)
  expected, terms = _reference_loss(student, teacher, center, 0.1, 0.04)
  assert terms == 2 * 4 - 2
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(batch_center, teacher.mean(axis=(0, 1)), rtol=1e-6)


def test_loss_equals_a_pytorch_dino_loss():
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  student, teacher, center = _case(3, n_crops=6, batch=4, classes=7)

  def torch_dino_loss(student_output, teacher_output, center, n_crops, temp=0.04):
    """DINO's DINOLoss.forward over torch tensors: crops stacked along the batch, chunked."""
    student_out = (student_output / 0.1).chunk(n_crops)
    teacher_out = F.softmax((teacher_output - center) / temp, dim=-1).detach().chunk(2)
    total, n_terms = 0, 0
    for iq, q in enumerate(teacher_out):
      for v in range(len(student_out)):
        if v == iq:
          continue
        total += torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1).mean()
        n_terms += 1
    batch_center = torch.sum(teacher_output, dim=0, keepdim=True) / len(teacher_output)
    return total / n_terms, batch_center

  expected, expected_center = torch_dino_loss(
      torch.from_numpy(student.reshape(-1, 7)).double(), torch.from_numpy(teacher.reshape(-1, 7)).double(),
      torch.from_numpy(center[None]).double(), 6)
  loss, batch_center = dino.dino_loss(student, teacher, center)
  np.testing.assert_allclose(loss, expected.item(), rtol=1e-5)
  np.testing.assert_allclose(batch_center, expected_center[0].numpy(), rtol=1e-6, atol=1e-7)


def test_a_teacher_crop_is_never_compared_with_its_own_student_crop():
  """d loss / d s_j = sum over teacher crops i != j of (p_s(j) - p_t(i)) / (T_s B n_terms), n_terms 6."""
  student, teacher, center = _case(4)
  grad = jax.grad(lambda s: dino.dino_loss(s, teacher, center)[0])(student)
  p_t = np.exp(_log_softmax((teacher.astype(np.float64) - center) / 0.04))
  p_s = np.exp(_log_softmax(student.astype(np.float64) / 0.1))
  scale = 1.0 / (0.1 * 3 * 6)
  np.testing.assert_allclose(grad[0], (p_s[0] - p_t[1]) * scale, atol=1e-6)  # teacher 1 only
  np.testing.assert_allclose(grad[1], (p_s[1] - p_t[0]) * scale, atol=1e-6)  # teacher 0 only
  for j in (2, 3):                                                          # both teachers
    np.testing.assert_allclose(grad[j], (2 * p_s[j] - p_t[0] - p_t[1]) * scale, atol=1e-6)


def test_the_teacher_gets_no_gradient():
  student, teacher, center = _case(5)
  grad = jax.grad(lambda t: dino.dino_loss(student, t, center)[0])(teacher)
  np.testing.assert_array_equal(grad, np.zeros_like(teacher))


def test_two_class_case_by_hand_centring_and_temperatures():
  """2 crops (both global), B 1, K 2: the two terms CE(p_t(0), p_s(1)) and CE(p_t(1), p_s(0))."""
  teacher = np.array([[[1.0, 0.0]], [[0.0, 1.0]]], np.float32)
  student = np.array([[[0.0, 0.2]], [[0.3, 0.0]]], np.float32)
  center = np.array([0.5, 0.0], np.float32)
  sigmoid = lambda z: 1.0 / (1.0 + math.exp(-z))
  # teacher 0: (1 - 0.5, 0 - 0) / 0.04 = (12.5, 0); teacher 1: (-0.5, 1) / 0.04 = (-12.5, 25).
  p_t0 = [sigmoid(12.5), sigmoid(-12.5)]
  p_t1 = [sigmoid(-37.5), sigmoid(37.5)]
  # student 0: (0, 2) after / 0.1; student 1: (3, 0).
  log_s0 = [-math.log1p(math.exp(2.0)), 2.0 - math.log1p(math.exp(2.0))]
  log_s1 = [3.0 - math.log1p(math.exp(3.0)), -math.log1p(math.exp(3.0))]
  ce = lambda p, log_q: -(p[0] * log_q[0] + p[1] * log_q[1])
  expected = (ce(p_t0, log_s1) + ce(p_t1, log_s0)) / 2
  loss, batch_center = dino.dino_loss(student, teacher, center)
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  np.testing.assert_allclose(batch_center, [0.5, 0.5])
  # Teacher temperature 1 and no centring: softmax(1, 0) and softmax(0, 1); student temperature 1.
  soft = [1 / (1 + math.e ** -1), 1 / (1 + math.e)]
  log_s0 = [-math.log1p(math.exp(0.2)), 0.2 - math.log1p(math.exp(0.2))]
  log_s1 = [0.3 - math.log1p(math.exp(0.3)), -math.log1p(math.exp(0.3))]
  expected = (ce(soft, log_s1) + ce(soft[::-1], log_s0)) / 2
  loss, _ = dino.dino_loss(student, teacher, np.zeros(2, np.float32), student_temp=1.0, teacher_temp=1.0)
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_batch_center_is_the_mean_over_every_device_with_axis_name():
  student, teacher, center = _case(6, batch=4)
  halves = lambda x: np.stack([x[:, :2], x[:, 2:]])  # (devices, crops, B / 2, K)
  per_device = jax.vmap(lambda s, t: dino.dino_loss(s, t, center, axis_name="d"), axis_name="d")
  _, centers = per_device(halves(student), halves(teacher))
  np.testing.assert_allclose(centers, np.stack([teacher.mean(axis=(0, 1))] * 2), rtol=1e-6, atol=1e-7)


def test_center_ema():
  np.testing.assert_allclose(dino.update_center(np.array([1.0, 2.0]), np.array([3.0, -1.0])),
                             [1.2, 1.7], rtol=1e-6)
  np.testing.assert_allclose(dino.update_center(np.array([1.0]), np.array([3.0]), momentum=0.5), [2.0])


def test_teacher_momentum_cosine():
  np.testing.assert_allclose(dino.teacher_momentum(0, 100), 0.996, rtol=1e-7)
  np.testing.assert_allclose(dino.teacher_momentum(50, 100), 0.998, rtol=1e-7)
  np.testing.assert_allclose(dino.teacher_momentum(100, 100), 1.0, rtol=1e-7)
  np.testing.assert_allclose(dino.teacher_momentum(25, 100), 1 - 0.004 * (math.cos(math.pi / 4) + 1) / 2,
                             rtol=1e-7)
  ramp = optim.cosine_ramp(0.996, 1.0, 37)
  for step in (0, 5, 18, 36, 37):
    np.testing.assert_allclose(dino.teacher_momentum(step, 37), ramp(step), rtol=1e-7)


def test_ema_update_on_pytrees():
  teacher = {"a": np.array([1.0, 2.0], np.float32), "b": {"c": np.array(-1.0, np.float32)}}
  student = {"a": np.array([3.0, 0.0], np.float32), "b": {"c": np.array(1.0, np.float32)}}
  new = ema.update(teacher, student, 0.75)  # the teacher's EMA (jreid.core.ema)
  np.testing.assert_allclose(new["a"], [1.5, 1.5])
  np.testing.assert_allclose(new["b"]["c"], -0.5)
  assert new["a"].dtype == jnp.float32


def test_clip_per_parameter_equals_dino_clip_gradients():
  rng = np.random.default_rng(7)
  grads = {"big": rng.normal(size=(4, 5)).astype(np.float32) * 10,
           "small": rng.normal(size=(3,)).astype(np.float32) * 0.1,
           "edge": np.array([3.0, 4.0], np.float32)}  # norm 5 = clip: scaled by 5 / (5 + 1e-6)
  tx = optim.clip_per_parameter(5.0)
  clipped, _ = tx.update(grads, tx.init(grads))
  for name, g in grads.items():
    norm = np.linalg.norm(g.astype(np.float64))
    coef = 5.0 / (norm + 1e-6)
    expected = g * coef if coef < 1 else g
    np.testing.assert_allclose(clipped[name], expected, rtol=1e-6, err_msg=name)
  np.testing.assert_allclose(np.linalg.norm(clipped["big"]), 5.0, rtol=1e-5)
  np.testing.assert_array_equal(clipped["small"], grads["small"])  # untouched, unlike a global clip
