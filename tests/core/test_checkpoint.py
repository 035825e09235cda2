import jax.numpy as jnp
import numpy as np
import pytest

from jreid.core import checkpoint
from jreid.core.state import TrainState
from jreid.errors import CheckpointMismatchError


def _state(width):
  return TrainState(step=jnp.int32(3), params={"conv": {"kernel": jnp.ones((3, width))}},
                    batch_stats={"bn": {"mean": jnp.zeros(width)}}, opt_state=(jnp.zeros(width),))


def test_save_restore_roundtrip_and_data_state(tmp_path):
  ckpt = checkpoint.Checkpointer(tmp_path / "ck", keep=2)
  state = _state(4).replace(params={"conv": {"kernel": jnp.arange(12.0).reshape(3, 4)}})
  ckpt.save(3, state, {"next_index": 3})
  ckpt.wait()
  restored, data = ckpt.restore(3, _state(4))
  assert np.array_equal(restored.params["conv"]["kernel"], state.params["conv"]["kernel"])
  assert data == {"next_index": 3}


def test_keeps_only_n(tmp_path):
  ckpt = checkpoint.Checkpointer(tmp_path / "ck", keep=2)
  for step in (1, 2, 3):
    ckpt.save(step, _state(2), {})
  ckpt.wait()
  assert sorted(ckpt.manager.all_steps()) == [2, 3]


def test_other_model_gives_a_clear_error(tmp_path):
  ckpt = checkpoint.Checkpointer(tmp_path / "ck")
  ckpt.save(3, _state(4), {})
  ckpt.wait()
  reopened = checkpoint.Checkpointer(tmp_path / "ck")
  with pytest.raises(CheckpointMismatchError, match=r"conv/kernel is \(3, 4\) in the checkpoint but \(3, 5\)"):
    reopened.restore(3, _state(5))


def test_open_existing_errors(tmp_path):
  with pytest.raises(CheckpointMismatchError, match="no checkpoint folder"):
    checkpoint.open_existing(tmp_path / "nothing")
  (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
  with pytest.raises(CheckpointMismatchError, match="no complete checkpoint"):
    checkpoint.open_existing(tmp_path / "empty")


def test_merge_matching_loads_same_name_and_shape_only():
  target = {"a": jnp.zeros(2), "b": jnp.zeros(3), "c": jnp.zeros(1)}
  source = {"a": np.ones(2), "b": np.ones(4)}
  merged, loaded, kept = checkpoint.merge_matching(target, source, prefix="params")
  assert np.array_equal(merged["a"], [1, 1]) and np.array_equal(merged["b"], [0, 0, 0])
  assert loaded == ["params/a"] and sorted(kept) == ["params/b", "params/c"]


def test_merge_matching_reports_skipped_names_and_why():
  from jreid.convert.load import LoadReport, resized_and_skipped
  target = {"a": jnp.zeros(2), "b": jnp.zeros(3), "c": jnp.zeros(1)}
  source = {"a": np.ones(2), "b": np.ones(4), "d": np.ones(5)}
  report = LoadReport()
  _, loaded, kept = checkpoint.merge_matching(target, source, prefix="params", report=report)
  assert report.loaded == loaded == ["params/a"] and kept == ["params/b", "params/c"]
  assert report.missing == ["params/c"]
  assert report.skipped == [("params/b", "shape mismatch: (4,) vs model (3,)"),
                            ("params/d", "not in the model")]
  assert resized_and_skipped(report) == (
      "; skipped 2: params/b (shape mismatch: (4,) vs model (3,)), params/d (not in the model)")
