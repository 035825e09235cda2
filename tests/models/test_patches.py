"""Cutting images into a rows x cols grid of patches, and the mirrored-patch index."""
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.models import patches


def _coded_images(batch, height, width):
  """Channel 0 = batch index, 1 = pixel row, 2 = pixel column: every pixel says where it came from."""
  b, y, x = np.meshgrid(np.arange(batch), np.arange(height), np.arange(width), indexing="ij")
  return np.stack([b, y, x], axis=-1).astype(np.float32)


def test_partition_4x2_pixels_land_in_their_grid_cell():
  images = _coded_images(3, 8, 4)
  out = np.asarray(patches.partition(jnp.asarray(images), 4, 2))
  assert out.shape == (8, 3, 2, 2, 3)
  # Hand-written: patch i covers pixel rows 2*(i//2)..+1 and columns 2*(i%2)..+1.
  cells = {0: (0, 0), 1: (0, 2), 2: (2, 0), 3: (2, 2), 4: (4, 0), 5: (4, 2), 6: (6, 0), 7: (6, 2)}
  for i, (top, left) in cells.items():
    for n in range(3):
      for dy in range(2):
        for dx in range(2):
          assert out[i, n, dy, dx].tolist() == [n, top + dy, left + dx], (i, n, dy, dx)


@pytest.mark.parametrize("rows,cols,height,width", [(4, 2, 8, 4), (2, 3, 4, 9), (1, 1, 3, 5), (3, 1, 6, 2)])
def test_partition_matches_slicing_loop(rows, cols, height, width):
  rng = np.random.default_rng(0)
  images = rng.normal(size=(2, height, width, 2)).astype(np.float32)
  out = np.asarray(patches.partition(jnp.asarray(images), rows, cols))
  ph, pw = height // rows, width // cols
  assert out.shape == (rows * cols, 2, ph, pw, 2)
  for r in range(rows):
    for c in range(cols):
      np.testing.assert_array_equal(out[r * cols + c], images[:, r * ph:(r + 1) * ph, c * pw:(c + 1) * pw])


def test_mirror_index_hand_written():
  assert patches.mirror_index(4, 2).tolist() == [1, 0, 3, 2, 5, 4, 7, 6]
  assert patches.mirror_index(2, 3).tolist() == [2, 1, 0, 5, 4, 3]
  assert patches.mirror_index(3, 1).tolist() == [0, 1, 2]   # one column: each patch is its own mirror
  assert patches.mirror_index(1, 4).tolist() == [3, 2, 1, 0]


@pytest.mark.parametrize("rows,cols", [(4, 2), (2, 3), (3, 4)])
def test_mirror_index_is_an_involution_within_a_stripe(rows, cols):
  mirror = patches.mirror_index(rows, cols)
  assert sorted(mirror.tolist()) == list(range(rows * cols))
  np.testing.assert_array_equal(mirror[mirror], np.arange(rows * cols))
  np.testing.assert_array_equal(mirror // cols, np.arange(rows * cols) // cols)  # same height


def test_mirror_patch_is_the_other_side_not_a_flipped_patch():
  images = _coded_images(2, 8, 4)
  parts = np.asarray(patches.partition(jnp.asarray(images), 4, 2))
  mirrored = parts[patches.mirror_index(4, 2)]
  # Mirror of patch 0 (top-left) is the top-right cell, pixels in their original order.
  np.testing.assert_array_equal(mirrored[0], images[:, 0:2, 2:4])
  np.testing.assert_array_equal(mirrored[5], images[:, 4:6, 0:2])
  for i in range(8):
    row, col = divmod(i, 2)
    other = 1 - col
    np.testing.assert_array_equal(mirrored[i], images[:, 2 * row:2 * row + 2, 2 * other:2 * other + 2])
  # Columns inside a mirrored patch still increase left to right: it is not flipped.
  assert (np.diff(mirrored[..., 2], axis=-1) == 1).all()


def test_patches_of_flipped_image_are_flipped_mirror_patches():
  """Flipping the image maps patch i to the horizontal flip of the original's mirror patch."""
  rng = np.random.default_rng(1)
  images = rng.normal(size=(2, 6, 6, 1)).astype(np.float32)
  parts = np.asarray(patches.partition(jnp.asarray(images), 2, 3))
  flipped_parts = np.asarray(patches.partition(jnp.asarray(images[:, :, ::-1]), 2, 3))
  mirror = patches.mirror_index(2, 3)
  for i in range(6):
    np.testing.assert_array_equal(flipped_parts[i], parts[mirror[i]][:, :, ::-1])
  # ... which is not the same as the mirror patch itself (the image is not symmetric).
  assert not np.array_equal(flipped_parts[0], parts[mirror[0]])


def test_partition_rejects_uneven_grids():
  with pytest.raises(ValueError, match="equal patches"):
    patches.partition(jnp.zeros((1, 9, 4, 3)), 4, 2)
  with pytest.raises(ValueError, match="equal patches"):
    patches.partition(jnp.zeros((1, 8, 5, 3)), 4, 2)
  with pytest.raises(ValueError):
    patches.partition(jnp.zeros((1, 8, 4, 3)), 3, 1)
