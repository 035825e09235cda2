"""DASA's per-domain training: what trains, what stays bit-identical, LwF's distillation."""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jreid import config_blocks
from jreid.core import partition, run_once
from jreid.errors import ConfigError
from jreid.methods import dasa
from jreid.models.reid import model_config
from jreid.train import update


def _build(config, num_classes=6):
  return dasa.build(config, num_classes, update.factory(config, 10))


def _config(strategy, sa_kernel):
  config = ml_collections.ConfigDict()
  config.method = "dasa"
  config.train = config_blocks.train(steps=10)
  config.model = model_config("reid", "resnet18")
  # SA in layer4 only: what every test here checks, at a fraction of all five stages' compile time.
  config.model.backbone.update(width=8, sa_kernel=sa_kernel, sa_stages=(4,))
  config.model.update(pooling="gem")
  config.loss = config_blocks.loss(triplet_weight=0.0)
  config.optim = config_blocks.optim()  # Adam with weight decay 5e-4 on whatever trains
  config.lifelong = dasa.lifelong_config(strategy=strategy)
  return config


@functools.lru_cache(maxsize=None)  # one compiled run per strategy, shared by the tests
def _train(strategy, sa_kernel, steps=2):
  config = _config(strategy, sa_kernel)
  method = dasa.build(config, 6, update.factory(config, 10))
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.normal(size=(12, 32, 16, 3)), jnp.float32)
  state = run_once.jit(method.init)(jax.random.key(0), images[:1])
  before = jax.device_get(state)
  step = jax.jit(method.train_step)
  for i in range(steps):
    batch = {"image": images + 0.1 * i, "label": jnp.arange(12) % 6}
    state, measurements = step(state, batch, jax.random.key(i))
  assert np.isfinite(float(measurements["loss"]))
  return method, before, jax.device_get(state)


def _leaves(tree):
  return dict(zip(partition.paths(tree), jax.tree.leaves(tree)))


@pytest.mark.parametrize("strategy,sa_kernel", [("dasa", 5), ("da", 0), ("sa", 5)])
def test_only_the_strategy_s_trainable_leaves_change(strategy, sa_kernel):
  method, before, after = _train(strategy, sa_kernel)
  pattern = method.impl.strategy.trainable
  frozen_before = _leaves(partition.exclude(before.params, pattern))
  frozen_after = _leaves(partition.exclude(after.params, pattern))
  assert frozen_before.keys() == frozen_after.keys() and frozen_before
  for name, value in frozen_before.items():  # bit for bit: same bytes
    assert value.tobytes() == frozen_after[name].tobytes(), name
  trained_before = _leaves(partition.select(before.params, pattern))
  trained_after = _leaves(partition.select(after.params, pattern))
  changed = [n for n in trained_before if not np.array_equal(trained_before[n], trained_after[n])]
  assert len(changed) == len(trained_before), set(trained_before) - set(changed)
  if strategy == "dasa":
    assert any(n.endswith("sa/kernel") for n in changed)
    assert any(n.startswith("backbone/layer4") and n.endswith("/scale") for n in changed)
    assert not any(n.endswith("conv2/kernel") for n in trained_before)


def test_sa_baseline_keeps_the_pretrained_backbone_statistics():
  _, before, after = _train("sa", 5)
  for name, value in _leaves(before.batch_stats["backbone"]).items():
    assert value.tobytes() == _leaves(after.batch_stats["backbone"])[name].tobytes(), name
  assert not np.array_equal(before.batch_stats["head"]["neck"]["mean"],
                            after.batch_stats["head"]["neck"]["mean"])


def test_dasa_updates_every_running_statistic():
  _, before, after = _train("dasa", 5)
  stats_before, stats_after = _leaves(before.batch_stats), _leaves(after.batch_stats)
  assert all(not np.array_equal(stats_before[n], stats_after[n]) for n in stats_before)


def test_optimiser_state_covers_only_trainable_leaves():
  method, before, _ = _train("dasa", 5)
  moments = [x for x in jax.tree.leaves(before.opt_state) if getattr(x, "ndim", 0) > 0]
  n_trainable = len(jax.tree.leaves(partition.select(before.params, method.impl.strategy.trainable)))
  assert len(moments) == 2 * n_trainable  # Adam's mu and nu, nothing for frozen convs


def test_bank_holds_norms_sa_and_statistics_only():
  method, _, after = _train("dasa", 5)
  bank = method.bank(after.params, after.batch_stats)
  names = partition.paths(bank["params"])
  assert names and all(n.endswith(("/scale", "/bias", "sa/kernel")) for n in names)
  assert "head/neck/scale" in names and not any("classifier" in n for n in names)
  assert partition.paths(bank["batch_stats"]) == partition.paths(after.batch_stats)


def test_strategy_and_model_must_agree():
  with pytest.raises(ConfigError, match="needs SA modules"):
    _build(_config("dasa", 0))
  with pytest.raises(ConfigError, match="has no SA modules"):
    _build(_config("da", 5))
  with pytest.raises(ConfigError, match="lifelong.teacher"):
    _build(_config("lwf", 0))
  with pytest.raises(ConfigError, match="strategy"):
    _build(_config("ewc", 0))


def test_lwf_distillation_is_the_tempered_kl_on_the_old_classes():
  config = _config("finetune", 0)
  finetune = dasa.build(config, 4, update.factory(config, 10))
  images = jax.random.normal(jax.random.key(1), (5, 32, 16, 3))
  state = run_once.jit(finetune.init)(jax.random.key(0), images[:1])
  # Unit-scale class centres (the N(0, 0.001^2) init makes every logit ~0).
  params = partition.merge(state.params, {"head": {"classifier": {"kernel": jax.random.normal(
      jax.random.key(2), state.params["head"]["classifier"]["kernel"].shape)}}})
  teacher = {"params": params, "batch_stats": state.batch_stats}
  method = dasa.Lifelong(model=finetune.impl.model, strategy=dasa.STRATEGIES["lwf"],
                         update=finetune.impl.update, loss_config=config.loss,
                         teacher_model=finetune.impl.model, distill_temperature=2.0)
  _, out = finetune.impl.model.apply(teacher, images, train=False)
  # The student's own features through the same classifier: zero divergence.
  assert abs(float(method.distillation(teacher, images, out["neck"]))) < 1e-6
  other = out["neck"] * 3.0 + 0.5
  kernel = np.asarray(teacher["params"]["head"]["classifier"]["kernel"], np.float64)
  p = np.asarray(out["logits"], np.float64) / 2.0
  q = np.asarray(other, np.float64) @ kernel / 2.0
  log_p = p - np.log(np.exp(p).sum(-1, keepdims=True))
  log_q = q - np.log(np.exp(q).sum(-1, keepdims=True))
  expected = np.mean(np.sum(np.exp(log_p) * (log_p - log_q), -1)) * 4.0
  np.testing.assert_allclose(float(method.distillation(teacher, images, other)), expected, rtol=1e-4)


def test_the_compute_dtype_is_honoured():
  """The shared update step's mixed precision reaches DASA's forward (it used to be ignored)."""
  images = jnp.asarray(np.random.default_rng(1).normal(size=(4, 32, 16, 3)), jnp.float32)
  features = {}
  for dtype in ("float32", "bfloat16"):
    config = _config("dasa", 5)
    config.train.compute_dtype = dtype
    method = _build(config)
    state = run_once.jit(method.init)(jax.random.key(0), images[:1])
    features[dtype] = np.asarray(jax.jit(method.features)(state, images))
    assert features[dtype].dtype == np.float32
    if dtype == "bfloat16":  # the float32 step is every other DASA test's
      _, measured = jax.jit(method.train_step)(state, {"image": images, "label": jnp.arange(4)},
                                               jax.random.key(1))
      assert np.isfinite(float(measured["loss"]))
  difference = np.abs(features["bfloat16"] - features["float32"])
  assert 0 < difference.max() < 0.05 * np.abs(features["float32"]).max()
