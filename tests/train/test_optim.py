import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid import config_blocks
from jreid.errors import ConfigError
from jreid.train import optim


def test_warmup_multistep_matches_fastreid_formula():
  config = config_blocks.optim(lr=1.0, warmup_steps=10, warmup_factor=0.1, milestones=(20, 30))
  _, schedule = optim.build(config, total_steps=40)
  for step, expected in [(0, 0.1), (5, 0.1 * 0.5 + 0.5), (10, 1.0), (19, 1.0), (20, 0.1),
                         (29, 0.1), (30, 0.01), (39, 0.01)]:
    assert np.isclose(float(schedule(step)), expected), step


def test_delayed_cosine():
  config = config_blocks.optim(lr=2.0, schedule="cosine", cosine_delay_steps=10, min_lr=0.0)
  _, schedule = optim.build(config, total_steps=30)
  assert np.isclose(float(schedule(5)), 2.0)
  assert np.isclose(float(schedule(20)), 1.0)  # half way through the cosine part
  assert np.isclose(float(schedule(30)), 0.0, atol=1e-7)


def test_adam_uses_coupled_l2_like_pytorch():
  """One step of torch.optim.Adam(weight_decay=wd), written out by hand."""
  config = config_blocks.optim(lr=0.1, weight_decay=0.5)
  tx, _ = optim.build(config, total_steps=10)
  params = {"w": jnp.array([1.0, -2.0])}
  grads = {"w": jnp.array([0.3, 0.1])}
  updates, _ = tx.update(grads, tx.init(params), params)
  g = np.array([0.3, 0.1]) + 0.5 * np.array([1.0, -2.0])
  m, v = 0.1 * g / (1 - 0.9), 0.001 * g**2 / (1 - 0.999)
  assert np.allclose(updates["w"], -0.1 * m / (np.sqrt(v) + 1e-8), rtol=2e-5)  # float32 bias correction


def test_sgd_momentum_with_l2():
  config = config_blocks.optim(name="sgd", lr=0.1, weight_decay=0.01, momentum=0.9)
  tx, _ = optim.build(config, total_steps=10)
  params = {"w": jnp.array([2.0])}
  state = tx.init(params)
  velocity = 0.0
  for _ in range(3):
    grads = {"w": jnp.array([1.0])}
    updates, state = tx.update(grads, state, params)
    velocity = 0.9 * velocity + (1.0 + 0.01 * float(params["w"][0]))
    expected = float(params["w"][0]) - 0.1 * velocity
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    assert np.isclose(float(params["w"][0]), expected, rtol=1e-6)


def test_unknown_names_are_config_errors():
  with pytest.raises(ConfigError, match="adam"):
    optim.build(config_blocks.optim(name="adamax"), 10)
  with pytest.raises(ConfigError, match="multistep"):
    optim.build(config_blocks.optim(schedule="poly"), 10)


def test_weight_decay_can_follow_a_cosine_schedule():
  """SGD without momentum: each step's update is lr * (g + wd(t) p), wd cosine 0.04 -> 0.4."""
  config = config_blocks.optim(name="sgd", lr=0.5, momentum=0.0, weight_decay=0.04,
                               weight_decay_end=0.4, schedule="constant")
  tx, _ = optim.build(config, total_steps=4)
  params = {"w": jnp.array([1.0, -2.0])}
  state = tx.init(params)
  w = np.array([1.0, -2.0])
  for step in range(5):
    decay = 0.4 + (0.04 - 0.4) * 0.5 * (1 + np.cos(np.pi * min(step / 4, 1.0)))
    updates, state = tx.update({"w": jnp.array([0.1, 0.1])}, state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    w = w - 0.5 * (0.1 + decay * w)
    np.testing.assert_allclose(params["w"], w, rtol=1e-6)
  assert np.isclose(decay, 0.4)
