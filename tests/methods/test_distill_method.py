"""The distill method: teacher loading and its errors, one train step, exact checkpoint round trip."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid import config_blocks, methods
from jreid.core import checkpoint
from jreid.core.state import TrainState
from jreid.errors import CheckpointMismatchError, ConfigError
from jreid.losses import distill as kd
from jreid.losses import objective
from jreid.methods.distill import DistillState, teacher_config
from jreid.models.reid import build_model, model_config
from jreid.train import update

NUM_CLASSES, HEIGHT, WIDTH = 4, 32, 16


def _model_config(width=8):
  model = model_config("reid", "resnet18")
  model.backbone.update(width=width)
  return model


def _random_like(tree, seed):
  """Plausible values without running the initialisers (XLA CPU compiles cost seconds)."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-1].key
    if name == "kernel":
      return (rng.normal(size=leaf.shape) * np.sqrt(2 / np.prod(leaf.shape[:-1]))).astype(np.float32)
    if name in ("scale", "var"):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    return (0.1 * rng.normal(size=leaf.shape)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, tree)


def _save_teacher(directory, *, width=8, num_classes=NUM_CLASSES, seed=1):
  model = build_model(_model_config(width), num_classes)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, HEIGHT, WIDTH, 3)),
                                             train=False))
  variables = _random_like(shapes, seed)
  state = TrainState(step=jnp.int32(4), params=variables["params"],
                     batch_stats=variables["batch_stats"], opt_state=jnp.zeros(()))
  ckpt = checkpoint.Checkpointer(directory / checkpoint.CHECKPOINT_SUBDIR)
  ckpt.save(4, state, {})
  ckpt.wait()
  ckpt.close()
  return model, variables


def _config(teacher_dir, loss="kl_pkt"):
  config = config_blocks.run(method="distill")
  config.model = _model_config()
  config.loss = config_blocks.loss()
  config.optim = config_blocks.optim(lr=1e-2)
  config.train = config_blocks.train(steps=10)
  config.teacher = teacher_config(model=_model_config(), checkpoint=str(teacher_dir), loss=loss,
                                  pkt_weight=2.0)
  return config


def _build(config, num_classes=NUM_CLASSES):
  return methods.build(config, num_classes, update.factory(config, config.train.steps))


def _fresh_state(method, seed=2):
  """The student filled with random values (its shapes from `init`), then the teacher loaded."""
  sample = jnp.zeros((1, HEIGHT, WIDTH, 3))
  shapes = jax.eval_shape(method.init, jax.random.key(0), sample)
  assert isinstance(shapes, DistillState)
  variables = _random_like({"params": shapes.params, "batch_stats": shapes.batch_stats}, seed)
  state = DistillState(step=jnp.int32(0), params=variables["params"],
                       batch_stats=variables["batch_stats"],
                       opt_state=method.impl.student.update.init(variables["params"]),
                       teacher=jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes.teacher))
  return method.load_weights(jax.device_put(state))


def _batch(seed=3):
  rng = np.random.default_rng(seed)
  return {"image": rng.normal(size=(8, HEIGHT, WIDTH, 3)).astype(np.float32),
          "label": np.repeat(np.arange(NUM_CLASSES), 2).astype(np.int32)}


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("teacher")
  _save_teacher(directory)
  return directory


def test_teacher_is_loaded_into_the_state(teacher_dir):
  method = _build(_config(teacher_dir))
  state = _fresh_state(method)
  stored = checkpoint.open_existing(teacher_dir)[0].restore_raw(4)
  for part in ("params", "batch_stats"):
    got = jax.tree.leaves(state.teacher[part])
    want = jax.tree.leaves(stored[part])
    assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("loss", ["kl_pkt", "l1_pkt"])
def test_one_step_trains_only_the_student(teacher_dir, loss):
  method = _build(_config(teacher_dir, loss))
  state = _fresh_state(method)
  before = jax.device_get(state)
  batch, rng = _batch(), jax.random.key(5)
  new_state, measured = jax.jit(method.train_step)(state, batch, rng)
  new_state, measured = jax.device_get((new_state, measured))

  same = jax.tree.map(np.array_equal, before.teacher, new_state.teacher)
  assert all(jax.tree.leaves(same))  # bit for bit
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), before.params, new_state.params)
  assert any(jax.tree.leaves(changed))
  assert int(new_state.step) == 1

  # The measured parts are the loss functions applied by hand to the two models' outputs.
  student_out, _ = method.impl.student.apply_train(before.params, before.batch_stats, batch["image"], rng)
  teacher_feature, teacher_out = method.impl.teacher_model.apply(before.teacher, batch["image"],
                                                            train=False)
  if loss == "kl_pkt":
    logit_part = kd.symmetric_kl(student_out["logits"], teacher_out["logits"], 16.0)
  else:
    logit_part = kd.logit_l1(student_out["logits"], teacher_out["logits"])
  pkt_part = kd.pkt(student_out["neck"], teacher_feature)
  reid, _ = objective.reid_losses(student_out, batch["label"], method.impl.student.loss_config)
  np.testing.assert_allclose(measured["loss_kd_logit"], logit_part, rtol=1e-4)
  np.testing.assert_allclose(measured["loss_pkt"], pkt_part, rtol=1e-4)
  np.testing.assert_allclose(measured["loss"], reid + logit_part + 2.0 * pkt_part, rtol=1e-4)
  assert float(logit_part) > 0 and float(pkt_part) > 0


def test_state_round_trips_through_a_checkpoint(teacher_dir, tmp_path):
  method = _build(_config(teacher_dir))
  state = _fresh_state(method)
  ckpt = checkpoint.Checkpointer(tmp_path / "ck")
  ckpt.save(1, state, {"next": 1})
  ckpt.wait()
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                          state)
  restored, data = ckpt.restore(1, abstract)
  assert isinstance(restored, DistillState) and data == {"next": 1}
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, restored, state)))


def test_missing_teacher_gives_a_clear_error(tmp_path):
  method = _build(_config(tmp_path / "no_such_run"))
  with pytest.raises(CheckpointMismatchError, match="no checkpoint folder at .*no_such_run"):
    _fresh_state(method)


def test_teacher_of_another_model_gives_a_clear_error(tmp_path):
  _save_teacher(tmp_path / "wide", width=16)
  with pytest.raises(CheckpointMismatchError, match="does not fit config.teacher.model"):
    _fresh_state(_build(_config(tmp_path / "wide")))


def test_teacher_of_other_identities_gives_a_clear_error(tmp_path):
  _save_teacher(tmp_path / "other", num_classes=NUM_CLASSES + 1)
  with pytest.raises(CheckpointMismatchError, match="trained on 5 identities but this run has 4"):
    _fresh_state(_build(_config(tmp_path / "other")))


def test_config_errors(teacher_dir):
  with pytest.raises(ConfigError, match="teacher.checkpoint is empty"):
    _build(_config(""))
  with pytest.raises(ConfigError, match="teacher.loss='mse'"):
    _build(_config(teacher_dir, loss="mse"))
  config = _config(teacher_dir)
  config.teacher.weight = 1.0
  with pytest.raises(ConfigError, match=r"unknown \['weight'\]"):
    _build(config)
  assert dataclasses.is_dataclass(_build(_config(teacher_dir)))
