import pathlib
import shutil

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


# ---------------------------------------------------------------- digests and damaged steps

def _saved(tmp_path, steps=(1, 2), keep=3):
  ckpt = checkpoint.Checkpointer(tmp_path / "ck", keep=keep)
  for step in steps:
    ckpt.save(step, _state(4).replace(step=jnp.int32(step)), {"iterator": {"next_index": step}})
  return ckpt


def test_digest_lists_every_file_of_the_step_with_its_sha256(tmp_path):
  import hashlib
  import json
  folder = _saved(tmp_path, steps=(1,)).step_folder(1)
  digest = json.loads((folder / checkpoint.DIGEST_FILE).read_text())
  on_disk = {p.relative_to(folder).as_posix(): [p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()]
             for p in folder.rglob("*") if p.is_file() and p.name != checkpoint.DIGEST_FILE}
  assert digest["files"] == on_disk and "state/_METADATA" in on_disk and "data/metadata" in on_disk
  assert checkpoint.step_problem(folder) == (None, True)


def test_later_saves_leave_earlier_digests_valid(tmp_path):
  ckpt = _saved(tmp_path, steps=(1, 2, 3, 4), keep=2)
  assert ckpt.all_steps() == [3, 4]  # keep-2 removed 1 and 2, digests included
  assert not (tmp_path / "ck" / "1").exists()
  assert [checkpoint.step_problem(ckpt.step_folder(s)) for s in (3, 4)] == [(None, True)] * 2
  assert ckpt.check(3) is True


@pytest.mark.parametrize("where", ["state/_METADATA", "data/metadata", "_CHECKPOINT_METADATA", "array"])
def test_a_flipped_byte_anywhere_is_an_error_naming_the_step_and_file(tmp_path, where):
  ckpt = _saved(tmp_path)
  folder = ckpt.step_folder(2)
  if where == "array":  # the biggest file of the ocdbt store holds the arrays
    where = max((p for p in (folder / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    where = where.relative_to(folder).as_posix()
  data = bytearray((folder / where).read_bytes())
  data[len(data) // 2] ^= 0x01
  (folder / where).write_bytes(bytes(data))
  with pytest.raises(checkpoint.CheckpointDamagedError) as raised:
    ckpt.restore(2, _state(4))
  message = str(raised.value)
  assert f"checkpoint {folder} cannot be used: {where} differs from its digest" in message
  assert f"step 1 is intact (verified by its digest): move {folder} out of {ckpt.directory}" in message
  with pytest.raises(checkpoint.CheckpointDamagedError, match=where):
    ckpt.restore_raw(2)
  restored, data_state = ckpt.restore(1, _state(4))  # the older step still restores
  assert int(restored.step) == 1 and data_state == {"iterator": {"next_index": 1}}


def test_missing_extra_and_truncated_files(tmp_path):
  ckpt = _saved(tmp_path)
  folder = ckpt.step_folder(2)
  (folder / "data" / "metadata").unlink()
  assert checkpoint.step_problem(folder) == ("data/metadata is missing (its digest lists it)", False)
  (folder / "data" / "metadata").write_text("{}")
  assert checkpoint.step_problem(folder)[0].startswith("data/metadata is 2 bytes, its digest says")
  shutil.rmtree(folder / "data")
  (folder / "notes.txt").write_text("x")
  problem = checkpoint.step_problem(folder)[0]
  assert problem.startswith("data/ is missing (its digest lists 2 files in it) (and 1 more problem(s))")
  (folder / checkpoint.DIGEST_FILE).write_text('{"format": "something else"}')
  assert "its digest jreid_digest.json is unreadable" in checkpoint.step_problem(folder)[0]


def test_a_step_without_digest_restores_with_a_note(tmp_path, capsys):
  ckpt = _saved(tmp_path)
  (ckpt.step_folder(2) / checkpoint.DIGEST_FILE).unlink()  # as a jreid before digests wrote it
  restored, data_state = ckpt.restore(2, _state(4))
  assert int(restored.step) == 2 and data_state == {"iterator": {"next_index": 2}}
  assert f"note: checkpoint {ckpt.step_folder(2)} has no jreid_digest.json" in capsys.readouterr().out


def test_no_older_intact_step_is_said(tmp_path):
  ckpt = _saved(tmp_path)
  for step in (1, 2):
    (ckpt.step_folder(step) / "state" / "_METADATA").write_text("{}")
  with pytest.raises(checkpoint.CheckpointDamagedError, match=r"; no older step is intact \(checked \[1\]\)$"):
    ckpt.restore(2, _state(4))
  with pytest.raises(checkpoint.CheckpointDamagedError, match="; there is no older step$"):
    ckpt.restore(1, _state(4))


def test_an_empty_stray_step_folder_is_not_taken_for_a_checkpoint(tmp_path):
  ckpt = _saved(tmp_path)
  (tmp_path / "ck" / "99").mkdir()              # orbax counts it as the latest step
  (tmp_path / "ck" / "7.orbax-checkpoint-tmp-5").mkdir()  # an unfinished save: orbax skips it
  reader, step = checkpoint.open_existing(tmp_path / "ck")
  assert step == 99
  with pytest.raises(checkpoint.CheckpointDamagedError,
                     match=r"99 cannot be used: the folder is empty, not a checkpoint .*step 2 is intact"):
    reader.restore_raw(step)


def test_open_existing_accepts_one_step_folder(tmp_path):
  _saved(tmp_path)
  reader, step = checkpoint.open_existing(tmp_path / "ck" / "1")
  assert (reader.directory, step) == (tmp_path / "ck", 1)
  assert np.asarray(reader.restore_raw(step)["step"]) == 1
  with pytest.raises(CheckpointMismatchError, match=r"ck/1 is step 1, but step 2 was asked for"):
    checkpoint.open_existing(tmp_path / "ck" / "1", 2)
  with pytest.raises(CheckpointMismatchError, match=r"has no step 5; it has \[1, 2\]"):
    checkpoint.open_existing(tmp_path / "ck" / "5")
  assert checkpoint.open_existing(tmp_path / "ck", 1)[1] == 1


def test_a_host_numpy_snapshot_restores_bit_identical_into_the_shardings(tmp_path):
  """The loop may save a `jax.device_get` snapshot; the restore puts it on the abstract state's shardings."""
  import jax
  import ml_dtypes
  import optax

  from jreid.core import sharding
  repl = sharding.replicated(sharding.data_mesh())
  rng = np.random.default_rng(0)
  params = {"conv": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 4, 8)), jnp.float32)},
            "head": {"w": jnp.asarray(rng.normal(size=(8,)), jnp.bfloat16)}}
  tx = optax.adam(1e-3)
  opt_state = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)[1]
  state = TrainState(step=jnp.int32(7), params=params,
                     batch_stats={"bn": {"var": jnp.asarray(rng.random(8), jnp.float32)}},
                     opt_state=opt_state)
  state = jax.device_put(state, repl)
  host = jax.device_get(state)
  assert all(isinstance(leaf, np.ndarray) for leaf in jax.tree.leaves(host))
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl), state)
  ckpt = checkpoint.Checkpointer(tmp_path / "ck")
  ckpt.save(7, host, {"iterator": {"next_index": 7}})
  assert ckpt.check(7) is True
  restored, _ = checkpoint.Checkpointer(tmp_path / "ck", read_only=True).restore(7, abstract)
  for (path, got), want, shape in zip(jax.tree_util.tree_flatten_with_path(restored)[0],
                                      jax.tree.leaves(state), jax.tree.leaves(abstract)):
    assert isinstance(got, jax.Array) and got.sharding == shape.sharding, jax.tree_util.keystr(path)
    assert got.dtype == want.dtype and np.asarray(got).tobytes() == np.asarray(want).tobytes()
  assert restored.params["head"]["w"].dtype == ml_dtypes.bfloat16


def test_a_stored_iterator_position_that_does_not_fit_is_one_error(tmp_path):
  from jreid.data import pipeline
  from jreid.data.records import Record
  records = [Record(f"/nowhere/{i}.jpg", i % 4, i % 2) for i in range(16)]
  dataset = pipeline.train_dataset(records, options=pipeline.ImageOptions(height=8, width=4),
                                   batch_size=8, num_instances=2, num_steps=3, seed=0)
  where = tmp_path / "ck" / "2"
  for state, expected in (({"next_index": 10**9}, "IndexError"), ({}, "KeyError"),
                          ({"next_index": "a"}, "TypeError")):
    with pytest.raises(checkpoint.CheckpointDamagedError,
                       match=rf"checkpoint {where}: its input pipeline state .* \({expected}: "):
      checkpoint.set_iterator_state(iter(dataset), state, where)
  iterator = iter(dataset)
  checkpoint.set_iterator_state(iterator, {"next_index": 2}, where)  # in range: accepted
  assert iterator.get_state() == {"next_index": 2}


def test_an_unreadable_file_is_named(tmp_path, monkeypatch):
  """As for a file without read permission (the tests may run as root, who reads anything)."""
  ckpt = _saved(tmp_path)
  folder = ckpt.step_folder(2)
  real_open = open

  def failing_open(path, *args, **kwargs):
    if pathlib.Path(path) == folder / "data" / "metadata":
      raise PermissionError(13, "Permission denied", str(path))
    return real_open(path, *args, **kwargs)

  monkeypatch.setattr("builtins.open", failing_open)
  assert checkpoint.step_problem(folder) == ("data/metadata cannot be read (Permission denied)", False)
