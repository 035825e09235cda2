"""DINO's multi-crop views: shapes, DINO's per-crop probabilities, solarisation, and a stream that is
a pure function of (seed, position) and resumes where it stopped."""
import numpy as np

from jreid.data import augment, datasets, multicrop, transforms
from jreid.data.records import relabel

SPEC = multicrop.MultiCrop(global_size=(32, 16), local_size=(16, 8), num_local=3)


def test_solarize_inverts_values_at_or_above_the_threshold():
  image = np.array([[[0, 127, 128], [200, 255, 10]]], np.uint8)
  out = augment.solarize(image, np.random.default_rng(0), p=1.0)
  np.testing.assert_array_equal(out, [[[0, 127, 127], [55, 0, 10]]])
  assert augment.solarize(image, np.random.default_rng(0), p=0.0) is image


def test_per_crop_probabilities_are_dinos():
  spec = multicrop.MultiCrop()
  assert [spec.blur_p(c) for c in range(4)] == [1.0, 0.1, 0.5, 0.5]
  assert [spec.solarize_p(c) for c in range(4)] == [0.0, 0.2, 0.0, 0.0]
  assert (spec.global_size, spec.local_size, spec.num_global, spec.num_local) == (
      (256, 128), (128, 64), 2, 8)
  assert (spec.global_scale, spec.local_scale) == ((0.4, 1.0), (0.05, 0.4))


def test_views_are_seeded_by_seed_position_and_crop(market_root):
  image = transforms.decode(datasets.get("market1501", market_root).train[0].path)
  views = multicrop.views(image, SPEC, seed=3, position=5)
  assert views["global"].shape == (2, 32, 16, 3) and views["local"].shape == (3, 16, 8, 3)
  again = multicrop.views(image, SPEC, seed=3, position=5)
  assert all(np.array_equal(views[k], again[k]) for k in views)
  other = multicrop.views(image, SPEC, seed=3, position=6)
  assert not np.array_equal(views["global"], other["global"])
  # Crop c is its own stream: rebuilding crop 1 alone from (seed, position, 1) gives the same view.
  alone = multicrop.crop_view(image, SPEC, 1, np.random.default_rng([3, 5, 1]))
  np.testing.assert_array_equal(alone, views["global"][1])


def test_the_stream_is_deterministic_and_resumable(market_root):
  records = relabel(datasets.get("market1501", market_root).train)
  make = lambda: multicrop.multicrop_dataset(records, spec=SPEC, batch_size=8, num_steps=4, seed=0)
  full = list(make())
  assert len(full) == 4 and full[0]["global"].shape == (8, 2, 32, 16, 3)
  assert full[0]["local"].shape == (8, 3, 16, 8, 3) and full[0]["global"].dtype == np.float32
  iterator = iter(make())
  for _ in range(2):
    next(iterator)
  resumed = iter(make())
  resumed.set_state(iterator.get_state())
  for expected, batch in zip(full[2:], resumed):
    assert all(np.array_equal(expected[k], batch[k]) for k in expected)
