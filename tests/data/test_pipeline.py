import pathlib
import warnings

import numpy as np
import pytest
from PIL import Image

from jreid.data import datasets, pipeline
from jreid.data.records import relabel
from jreid.errors import ConfigError, ImageReadError
from tests.conftest import bomb_png

OPTIONS = pipeline.ImageOptions(height=32, width=16)


def test_identity_sampler_batches_are_p_ids_by_k():
  pids = np.repeat(np.arange(10), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
  sampler = pipeline.IdentitySampler(pids, batch_size=12, num_instances=3, seed=0)
  assert sampler.batches_per_epoch == 10 // 4
  for epoch in range(3):
    indices = sampler.epoch(epoch)
    for batch in indices.reshape(-1, 12):
      labels = pids[batch].reshape(4, 3)
      assert (labels == labels[:, :1]).all()          # K images of one identity
      assert len(set(labels[:, 0])) == 4              # P different identities
  # Identities with enough images are sampled without replacement.
  big = [b for b in sampler.epoch(0).reshape(-1, 3) if pids[b[0]] >= 3]
  assert all(len(set(b)) == 3 for b in big)
  # Deterministic for the seed, different for another seed.
  again = pipeline.IdentitySampler(pids, 12, 3, seed=0)
  other = pipeline.IdentitySampler(pids, 12, 3, seed=1)
  assert np.array_equal(again.epoch(1), sampler.epoch(1))
  assert not np.array_equal(other.epoch(1), sampler.epoch(1))


def test_sampler_rejects_impossible_batches():
  with pytest.raises(ConfigError, match="multiple"):
    pipeline.IdentitySampler([0, 1], batch_size=6, num_instances=4, seed=0)
  with pytest.raises(ConfigError, match="identities"):
    pipeline.IdentitySampler([0, 1], batch_size=8, num_instances=2, seed=0)


def _train(records, **kwargs):
  args = dict(options=OPTIONS, batch_size=8, num_instances=2, num_steps=6, seed=3)
  args.update(kwargs)
  return pipeline.train_dataset(records, **args)


def test_stream_is_deterministic_and_resumable(market_root):
  records = relabel(datasets.get("market1501", market_root).train)
  full = list(_train(records))
  assert len(full) == 6 and full[0]["image"].shape == (8, 32, 16, 3)
  assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(full, _train(records)))
  iterator = iter(_train(records))
  for _ in range(4):
    next(iterator)
  state = iterator.get_state()
  resumed = iter(_train(records))
  resumed.set_state(state)
  for expected, batch in zip(full[4:], resumed):
    assert np.array_equal(expected["image"], batch["image"])
    assert np.array_equal(expected["label"], batch["label"])


def test_hosts_split_the_global_batch(market_root):
  records = relabel(datasets.get("market1501", market_root).train)
  whole = list(_train(records))
  halves = [list(_train(records, host=h, num_hosts=2)) for h in range(2)]
  for step, batch in enumerate(whole):
    joined = np.concatenate([halves[0][step]["image"], halves[1][step]["image"]])
    assert np.array_equal(joined, batch["image"])


def test_test_batches_keep_order_and_pad(market_root):
  records = datasets.get("market1501", market_root).gallery
  batches = list(pipeline.test_batches(records, options=OPTIONS, batch_size=7))
  valid = np.concatenate([b["valid"] for b in batches])
  assert valid.sum() == len(records) and len(valid) % 7 == 0
  images = np.concatenate([b["image"] for b in batches])[valid]
  assert np.allclose(images[3], pipeline.load_test(records[3], OPTIONS))


def test_each_host_reads_only_its_slice_of_every_test_batch(market_root, monkeypatch):
  records = datasets.get("market1501", market_root).gallery  # 25 images: the last batch is padded
  whole = list(pipeline.test_batches(records, options=OPTIONS, batch_size=8))
  slices = [list(pipeline.test_batches(records, options=OPTIONS, batch_size=8, host=h, num_hosts=2))
            for h in range(2)]
  read = []  # which records host 1 decodes
  original = pipeline.load_test
  monkeypatch.setattr(pipeline, "load_test",
                      lambda record, options: read.append(record) or original(record, options))
  list(pipeline.test_batches(records, options=OPTIONS, batch_size=8, host=1, num_hosts=2,
                             num_threads=1))
  expected = [records[b * 8 + 4 + i] for b in range(4) for i in range(4) if b * 8 + 4 + i < 25]
  assert read == expected
  assert len(slices[0]) == len(slices[1]) == len(whole) == 4
  for batch, first, second in zip(whole, *slices):
    for key in ("image", "valid"):
      assert first[key].shape[0] == second[key].shape[0] == 4
      assert np.array_equal(np.concatenate([first[key], second[key]]), batch[key])
  with pytest.raises(ConfigError, match="eval.batch_size=7 must divide over 2 hosts"):
    pipeline.test_batches(records, options=OPTIONS, batch_size=7, host=0, num_hosts=2)


def test_unreadable_image_names_the_file(market_root):
  records = datasets.get("market1501", market_root).train
  broken = records[0].path
  with open(broken, "wb") as stream:
    stream.write(b"not a jpeg")
  with pytest.raises(ImageReadError, match=broken.split("/")[-1]):
    pipeline.load_test(records[0], OPTIONS)


def test_a_bomb_header_in_a_training_batch_names_the_file(market_root):
  """Through grain's reader threads: the error arrives in the consumer as it was raised."""
  records = relabel(datasets.get("market1501", market_root).train)
  # Every image of the first identity: the sampler takes all 4 of its images in epoch 0.
  bombs = [r.path for r in records if r.pid == 0]
  for path in bombs:
    pathlib.Path(path).write_bytes(bomb_png(20000, 20000))
  with pytest.raises(ImageReadError, match="exceeds limit") as err:
    for _ in _train(records, num_threads=2):
      pass
  assert any(path in str(err.value) for path in bombs)


def test_a_bomb_header_in_the_query_names_the_file(market_root):
  records = datasets.get("market1501", market_root).query
  pathlib.Path(records[4].path).write_bytes(bomb_png(10000, 10000))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    with pytest.raises(ImageReadError, match=f"{records[4].path}: its header claims 10000x10000"):
      list(pipeline.test_batches(records, options=OPTIONS, batch_size=4, num_threads=2))
