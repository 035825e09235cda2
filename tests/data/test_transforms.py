import numpy as np

from jreid.data import transforms


def _image(h=20, w=10):
  return np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)


def test_pad_crop_is_a_shifted_window_of_the_zero_padded_image():
  image = _image()
  out = transforms.pad_crop(image, np.random.default_rng(0), padding=3)
  rng = np.random.default_rng(0)
  top, left = rng.integers(0, 7), rng.integers(0, 7)
  padded = np.zeros((26, 16, 3), np.uint8)
  padded[3:23, 3:13] = image
  assert np.array_equal(out, padded[top:top + 20, left:left + 10])


def test_flip_probability_extremes():
  image = _image()
  rng = np.random.default_rng(0)
  assert np.array_equal(transforms.random_flip(image, rng, p=1.0), image[:, ::-1])
  assert np.array_equal(transforms.random_flip(image, rng, p=0.0), image)


def test_random_erase_fills_one_box_with_the_mean():
  image = np.zeros((64, 32, 3), np.uint8)
  out = transforms.random_erase(image, np.random.default_rng(1), p=1.0)
  changed = np.any(out != 0, axis=-1)
  rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
  assert changed.sum() == len(rows) * len(cols)              # a single rectangle
  assert 0.02 * 64 * 32 * 0.5 <= changed.sum() <= 0.4 * 64 * 32 * 1.5
  assert tuple(out[rows[0], cols[0]]) == (124, 116, 104)     # ImageNet mean x 255
  assert np.array_equal(transforms.random_erase(image, np.random.default_rng(1), p=0.0), image)


def test_normalize_matches_hand_computation():
  pixel = np.array([[[255, 0, 128]]], np.uint8)
  out = transforms.normalize(pixel)
  expected = (np.array([1.0, 0.0, 128 / 255]) - transforms.IMAGENET_MEAN) / transforms.IMAGENET_STD
  assert np.allclose(out[0, 0], expected, atol=1e-6)
