"""The VAE posterior cache: computed once, read back in order, recomputed when its inputs change."""
import os

import numpy as np
from PIL import Image

from jreid.data import posterior_cache
from jreid.data.records import Record


def _images(root, count, size=(12, 6)):
  rng = np.random.default_rng(0)
  records = []
  for i in range(count):
    path = root / f"{i:04d}_c1s1_000001_00.jpg"
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path, quality=95)
    records.append(Record(str(path), i, 0))
  return records


class CountingEncoder:
  """A stand-in VAE: mean = per-pixel channel sums on a 2x2 grid, logvar = -mean; counts its images."""

  def __init__(self):
    self.images = 0

  def __call__(self, images):
    self.images += len(images)
    b, s = images.shape[0], images.shape[1]
    pooled = images.reshape(b, 2, s // 2, 2, s // 2, 3).mean(axis=(2, 4))
    return pooled, -pooled


def test_vae_input_is_the_bicubic_square_in_minus_one_to_one():
  image = np.random.default_rng(1).integers(0, 256, (10, 5, 3), dtype=np.uint8)
  expected = np.asarray(Image.fromarray(image).resize((8, 8), Image.BICUBIC)).astype(np.float64)
  np.testing.assert_allclose(posterior_cache.vae_input(image, 8), expected / 127.5 - 1, atol=1e-6)
  extremes = np.array([[[0, 255, 0]]], np.uint8)
  np.testing.assert_array_equal(posterior_cache.vae_input(extremes, 1), [[[-1.0, 1.0, -1.0]]])


def test_cache_rows_follow_the_records_and_are_computed_once(tmp_path):
  records = _images(tmp_path, 5)
  encoder = CountingEncoder()
  kw = dict(encode=encoder, vae_digest="vae-a", size=4, folder=tmp_path / "cache", batch_size=2,
            log=lambda text: None)
  table = posterior_cache.ensure(records, **kw)
  assert table.shape == (5, 2, 2, 2, 3) and encoder.images == 6  # 3 padded batches of 2
  for i, record in enumerate(records):
    direct = posterior_cache.vae_input(np.asarray(Image.open(record.path).convert("RGB")), 4)
    mean, logvar = encoder(direct[None])
    np.testing.assert_allclose(table[i, 0], mean[0], atol=1e-6)
    np.testing.assert_allclose(table[i, 1], logvar[0], atol=1e-6)
  seen = encoder.images
  again = posterior_cache.ensure(records, **kw)
  assert encoder.images == seen  # read, not recomputed
  np.testing.assert_array_equal(again, table)
  assert not list((tmp_path / "cache").glob("*.partial.npy"))


def test_a_changed_image_or_vae_selects_another_cache_file(tmp_path):
  records = _images(tmp_path, 3)
  encoder = CountingEncoder()
  kw = dict(encode=encoder, size=4, folder=tmp_path / "cache", batch_size=4, log=lambda text: None)
  first = posterior_cache.ensure(records, vae_digest="vae-a", **kw)
  posterior_cache.ensure(records, vae_digest="vae-b", **kw)  # another VAE: another file
  assert len(list((tmp_path / "cache").glob("*.npy"))) == 2
  Image.fromarray(np.zeros((12, 6, 3), np.uint8)).save(records[1].path)  # the data changed
  stat = os.stat(records[1].path)
  os.utime(records[1].path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
  changed = posterior_cache.ensure(records, vae_digest="vae-a", **kw)
  assert len(list((tmp_path / "cache").glob("*.npy"))) == 3
  np.testing.assert_array_equal(changed[0], first[0])
  np.testing.assert_allclose(changed[1, 0], -1.0, atol=1e-6)  # the black image's mean
