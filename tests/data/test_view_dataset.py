"""The unlabelled image sampler and the two-view batches for contrastive pre-training."""
import numpy as np
import pytest

from jreid.data import datasets, pipeline
from jreid.errors import ConfigError

# Default flip / pad-crop / random erasing: two draws of the same image almost never agree.
OPTIONS = pipeline.ImageOptions(height=32, width=16)


def _stream(sampler, epochs):
  return np.array([sampler[p] for p in range(epochs * sampler.epoch_length)])


def test_image_sampler_epochs_visit_each_image_at_most_once():
  sampler = pipeline.ImageSampler(num_records=10, batch_size=3, seed=0)
  assert sampler.batches_per_epoch == 3 and sampler.epoch_length == 9   # remainder of 1 dropped
  stream = _stream(sampler, 4)
  for epoch in stream.reshape(4, 9):
    assert len(set(epoch.tolist())) == 9                  # no image twice in an epoch
    assert set(epoch.tolist()) <= set(range(10))
  for batch in stream.reshape(-1, 3):
    assert len(set(batch.tolist())) == 3                  # a batch never repeats an image
  # The dropped image changes between epochs, so over several every image is seen.
  assert set(stream.tolist()) == set(range(10))


def test_image_sampler_exact_multiple_covers_everything_each_epoch():
  sampler = pipeline.ImageSampler(num_records=8, batch_size=4, seed=5)
  for epoch in _stream(sampler, 3).reshape(3, 8):
    assert sorted(epoch.tolist()) == list(range(8))


def test_image_sampler_deterministic_per_seed_and_epochs_differ():
  a = _stream(pipeline.ImageSampler(20, 4, seed=1), 3)
  b = _stream(pipeline.ImageSampler(20, 4, seed=1), 3)
  c = _stream(pipeline.ImageSampler(20, 4, seed=2), 3)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  epochs = a.reshape(3, 20)
  assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
  # Not the identity order either.
  assert not np.array_equal(epochs[0], np.arange(20))


def test_image_sampler_rejects_batch_larger_than_data():
  with pytest.raises(ConfigError, match="larger than the training set"):
    pipeline.ImageSampler(num_records=3, batch_size=4, seed=0)


@pytest.fixture
def records(market_root):
  return datasets.get("market1501", market_root).train


def _views(records, **kwargs):
  args = dict(options=OPTIONS, batch_size=4, num_steps=3, seed=7, num_threads=1)
  args.update(kwargs)
  return list(pipeline.view_dataset(records, **args))


def test_view_batches_keys_shapes_dtypes(records):
  batches = _views(records)
  assert len(batches) == 3
  for batch in batches:
    assert set(batch) == {"original", "query", "key"}
    for name in ("original", "query", "key"):
      assert batch[name].shape == (4, 32, 16, 3)
      assert batch[name].dtype == np.float32


def test_original_is_the_test_view_of_the_sampled_record(records):
  batches = _views(records)
  sampler = pipeline.ImageSampler(len(records), 4, seed=7)
  test_views = np.stack([pipeline.load_test(r, OPTIONS) for r in records])
  for step, batch in enumerate(batches):
    matches = []
    for n, original in enumerate(batch["original"]):
      # Identify the record by content, independently of the sampler...
      equal = [i for i, view in enumerate(test_views) if np.array_equal(view, original)]
      assert len(equal) == 1
      matches.append(equal[0])
      # ... and it is the one the sampler puts at this stream position.
      assert equal[0] == sampler[step * 4 + n]
    assert len(set(matches)) == 4                          # no image twice in a batch


def test_query_and_key_are_independent_augmentations(records):
  batch = _views(records, num_steps=1)[0]
  sampler = pipeline.ImageSampler(len(records), 4, seed=7)
  for n in range(4):
    assert not np.array_equal(batch["query"][n], batch["key"][n])
    assert not np.array_equal(batch["query"][n], batch["original"][n])
    # As documented: load_train with default_rng([seed, position, 0]) and ([seed, position, 1]).
    record = records[sampler[n]]
    for v, name in enumerate(("query", "key")):
      expected = pipeline.load_train(record, OPTIONS, np.random.default_rng([7, n, v]))
      np.testing.assert_array_equal(batch[name][n], expected)


def test_without_augmentation_every_view_is_the_original(records):
  plain = pipeline.ImageOptions(height=32, width=16, flip_p=0.0, padding=0, erase_p=0.0)
  batch = _views(records, options=plain, num_steps=1)[0]
  np.testing.assert_array_equal(batch["query"], batch["original"])
  np.testing.assert_array_equal(batch["key"], batch["original"])


def test_view_stream_is_deterministic_and_seeded(records):
  first, second = _views(records), _views(records)
  for a, b in zip(first, second):
    for name in ("original", "query", "key"):
      np.testing.assert_array_equal(a[name], b[name])
  other = _views(records, seed=8, num_steps=1)[0]
  assert not np.array_equal(other["original"], first[0]["original"])


def test_hosts_split_the_global_view_batch(records):
  whole = _views(records, num_instances=4)               # extra train_dataset kwargs are ignored
  halves = [_views(records, host=h, num_hosts=2) for h in range(2)]
  for step, batch in enumerate(whole):
    for name in ("original", "query", "key"):
      assert halves[0][step][name].shape == (2, 32, 16, 3)
      joined = np.concatenate([halves[0][step][name], halves[1][step][name]])
      np.testing.assert_array_equal(joined, batch[name])


def test_batch_must_divide_over_hosts(records):
  with pytest.raises(ConfigError, match="hosts"):
    pipeline.view_dataset(records, options=OPTIONS, batch_size=4, num_steps=1, seed=0,
                          num_hosts=3)
