import warnings

import numpy as np
import pytest
from PIL import Image

from jreid.data import transforms
from jreid.errors import ImageReadError
from tests.conftest import bomb_png


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


# --- decode: every way a file can fail to be an image ends in an ImageReadError naming it --------

def _saved(path, size=(16, 8)):
  Image.fromarray(np.full(size + (3,), 90, np.uint8)).save(path)
  return path


@pytest.mark.parametrize("width,height,why", [
    (20000, 20000, "exceeds limit of"),                  # > 2 x MAX_IMAGE_PIXELS: PIL refuses
    (10000, 10000, "claims 10000x10000 = 100000000 pixels"),  # PIL would only warn, then allocate
])
def test_decompression_bomb_header_is_refused_before_decoding(tmp_path, width, height, why):
  path = tmp_path / "0001_c1s1_000001_01.png"
  path.write_bytes(bomb_png(width, height))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    with pytest.raises(ImageReadError, match=why) as err:
      transforms.decode(str(path))
  assert str(path) in str(err.value) and "MAX_IMAGE_PIXELS" in str(err.value)


def test_bomb_warning_as_error_is_an_image_read_error(tmp_path):
  path = tmp_path / "x.png"
  path.write_bytes(bomb_png(10000, 10000))
  with warnings.catch_warnings():
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    with pytest.raises(ImageReadError, match="decompression bomb"):
      transforms.decode(str(path))


def test_the_limit_is_pils(tmp_path, monkeypatch):
  path = _saved(tmp_path / "x.png")  # 128 pixels
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    with pytest.raises(ImageReadError, match="16 = 128 pixels, more than the limit of 100"):
      transforms.decode(str(path))
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # PIL's own switch turns the check off
  assert transforms.decode(str(path)).shape == (16, 8, 3)


@pytest.mark.parametrize("damage,why", [
    ("truncated", "Truncated File Read"),
    ("empty", "cannot identify"),
    ("folder", "Is a directory"),
    ("missing", "No such file"),
    ("text", "cannot identify"),
])
def test_damaged_files(tmp_path, damage, why):
  path = tmp_path / "0001_c1s1_000001_01.jpg"
  if damage == "truncated":
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 32, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:400])
  elif damage == "empty":
    path.write_bytes(b"")
  elif damage == "folder":
    path.mkdir()
  elif damage == "text":
    path.write_text("not an image\n")
  with pytest.raises(ImageReadError, match=why) as err:
    transforms.decode(str(path))
  assert str(err.value).startswith(f"cannot read image {path}: ")
