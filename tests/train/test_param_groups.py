"""Parameter groups and the timed freeze against hand-written PyTorch-style optimiser loops."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid import config_blocks
from jreid.core import tree_paths
from jreid.errors import ConfigError
from jreid.train import optim, param_groups

PARAMS = {"backbone": {"conv": {"kernel": np.array([1.0, -2.0], np.float32)}},
          "head": {"neck": {"bias": np.array([0.5], np.float32),
                            "scale": np.array([2.0], np.float32)}}}


def _grads(step):
  """Deterministic, step-dependent gradients for every leaf."""
  return jax.tree.map(lambda p: np.cos(step + np.arange(p.size, dtype=np.float32)) + 0.1 * p, PARAMS)


def _run(config, steps):
  tx, _ = optim.build(config, total_steps=steps)
  params = jax.tree.map(jnp.asarray, PARAMS)
  state = tx.init(params)
  update = jax.jit(tx.update)
  history = []
  for step in range(steps):
    updates, state = update(_grads(step), state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    history.append(jax.tree.map(np.asarray, params))
  return history


def _reference_adam(config, steps, frozen=lambda path: False, lr_mult=lambda path: 1.0,
                    wd_mult=lambda path: 1.0):
  """torch.optim.Adam with per-parameter groups; a frozen parameter gets no grad (so no step)."""
  flat = {path: p.astype(np.float64) for path, p in _flatten(PARAMS).items()}
  moments = {path: [0.0, 0.0, 0] for path in flat}
  _, schedule = optim.build(config, total_steps=steps)
  history = []
  for step in range(steps):
    grads = _flatten(_grads(step))
    lr = float(schedule(step))
    for path, p in flat.items():
      if step < config.freeze_steps and frozen(path):
        continue
      g = grads[path] + config.weight_decay * wd_mult(path) * p
      m = moments[path]
      m[2] += 1
      m[0] = config.beta1 * m[0] + (1 - config.beta1) * g
      m[1] = config.beta2 * m[1] + (1 - config.beta2) * g * g
      m_hat, v_hat = m[0] / (1 - config.beta1 ** m[2]), m[1] / (1 - config.beta2 ** m[2])
      flat[path] = p - lr * lr_mult(path) * m_hat / (np.sqrt(v_hat) + config.eps)
    history.append(dict(flat))
  return history


def _flatten(tree):
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {tree_paths.path_name(path): np.asarray(leaf) for path, leaf in leaves}


def _assert_history(got, ref):
  for step, (g, r) in enumerate(zip(got, ref)):
    for path, value in _flatten(g).items():
      np.testing.assert_allclose(value, r[path], rtol=2e-5, atol=1e-6, err_msg=f"{path} @ {step}")


def test_group_multipliers_match_per_group_adam():
  groups = ((r".*/bias", 2.0, 0.0), (r"head/.*", 10.0, 1.0))
  config = config_blocks.optim(lr=0.01, weight_decay=0.05, warmup_steps=3, groups=groups)
  lr_mult = lambda path: 2.0 if path.endswith("bias") else 10.0 if path.startswith("head") else 1.0
  wd_mult = lambda path: 0.0 if path.endswith("bias") else 1.0
  _assert_history(_run(config, 6), _reference_adam(config, 6, lr_mult=lr_mult, wd_mult=wd_mult))


def test_freeze_holds_the_group_then_starts_its_optimiser_fresh():
  config = config_blocks.optim(lr=0.01, weight_decay=0.05, warmup_steps=4, freeze="backbone/.*",
                               freeze_steps=3)
  got = _run(config, 7)
  for step in range(3):
    np.testing.assert_array_equal(got[step]["backbone"]["conv"]["kernel"],
                                  PARAMS["backbone"]["conv"]["kernel"])
  # After the freeze the backbone takes a full-size first Adam step (fresh bias correction),
  # at the global schedule's learning rate, exactly as a parameter without grads in torch.
  _assert_history(got, _reference_adam(config, 7, frozen=lambda path: path.startswith("backbone")))


def test_optim_frozen_never_trains_its_leaves_and_keeps_no_state_for_them():
  config = config_blocks.optim(lr=0.01, weight_decay=0.05, frozen="backbone/.*")
  got = _run(config, 5)
  for step in range(5):  # weight decay included: a frozen leaf is not in the optimiser at all
    np.testing.assert_array_equal(got[step]["backbone"]["conv"]["kernel"],
                                  PARAMS["backbone"]["conv"]["kernel"])
  reference = _reference_adam(config_blocks.optim(lr=0.01, weight_decay=0.05, freeze="backbone/.*",
                                                  freeze_steps=5), 5,
                              frozen=lambda path: path.startswith("backbone"))
  _assert_history(got, reference)
  table = param_groups.ParamTable.from_config(config, trainable=r"backbone/.*|head/neck/scale")
  trainable, frozen = table.split(PARAMS)
  assert param_groups.partition.paths(trainable) == ["head/neck/scale"]
  assert sorted(param_groups.partition.paths(frozen)) == ["backbone/conv/kernel", "head/neck/bias"]


def test_hold_keeps_matching_statistics_only_while_active():
  old = {"backbone": {"bn": {"mean": jnp.zeros(2)}}, "head": {"neck": {"mean": jnp.zeros(1)}}}
  new = jax.tree.map(lambda x: x + 1.0, old)
  held = param_groups.hold(new, old, "backbone/.*", jnp.asarray(True))
  np.testing.assert_array_equal(held["backbone"]["bn"]["mean"], [0.0, 0.0])
  np.testing.assert_array_equal(held["head"]["neck"]["mean"], [1.0])
  released = param_groups.hold(new, old, "backbone/.*", jnp.asarray(False))
  np.testing.assert_array_equal(released["backbone"]["bn"]["mean"], [1.0, 1.0])


def test_bad_group_settings_are_config_errors():
  with pytest.raises(ConfigError, match="pattern"):
    optim.build(config_blocks.optim(groups=(("[", 1.0, 1.0),)), 10)
  with pytest.raises(ConfigError, match="lr_multiplier"):
    optim.build(config_blocks.optim(groups=((".*", 1.0),)), 10)
  with pytest.raises(ConfigError, match="optim.freeze"):
    optim.build(config_blocks.optim(freeze_steps=5), 10)
