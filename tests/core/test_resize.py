"""Grid resizing against torch's F.interpolate (align_corners=False, no antialiasing)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jreid.core.resize import grid_matrices, interpolation_matrix, resize_grid
from jreid.errors import ConfigError

METHODS = ("bilinear", "bicubic")
TOLERANCE = {np.float64: 1e-6, np.float32: 1e-5}


def torch_resize(grid, *, size=None, scale=None, method):
  """F.interpolate of the (1, C, h, w) transpose of an (h, w, C) grid, back to (h, w, C)."""
  image = torch.from_numpy(grid).permute(2, 0, 1)[None]
  out = F.interpolate(image, size=size, scale_factor=scale, mode=method, align_corners=False)
  return out[0].permute(1, 2, 0).numpy()


def random_grid(shape, dtype, seed=0):
  return np.random.default_rng(seed).normal(size=(*shape, 6)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("size,new_size", [((14, 14), (16, 8)), ((14, 14), (21, 10)),
                                           ((16, 8), (8, 4)), ((1, 1), (3, 2)), ((7, 3), (20, 2))])
def test_matches_torch_for_an_output_size(size, new_size, method, dtype):
  grid = random_grid(size, dtype)
  got = resize_grid(grid, new_size, method)
  want = torch_resize(grid, size=new_size, method=method)
  assert got.dtype == dtype and got.shape == want.shape == (*new_size, 6)
  assert np.abs(got - want).max() <= TOLERANCE[dtype]


@pytest.mark.parametrize("method", METHODS)
def test_the_same_size_is_an_exact_copy(method):
  grid = random_grid((16, 8), np.float32)
  assert np.array_equal(resize_grid(grid, (16, 8), method), grid)
  assert np.array_equal(torch_resize(grid, size=(16, 8), method=method), grid)
  rows, cols = grid_matrices((16, 8), (16, 8), method)
  assert np.array_equal(rows, np.eye(16)) and np.array_equal(cols, np.eye(8))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n,w0,h0", [(14, 16, 8), (14, 21, 10), (14, 14, 14), (16, 8, 4)])
def test_matches_torch_given_dinos_scale_factor(n, w0, h0, method, dtype):
  """DINO's interpolate_pos_encoding: scale_factor=((w0 + 0.1) / sqrt(N), (h0 + 0.1) / sqrt(N))."""
  grid = random_grid((n, n), dtype, seed=1)
  scale = ((w0 + 0.1) / math.sqrt(n * n), (h0 + 0.1) / math.sqrt(n * n))
  want = torch_resize(grid, scale=scale, method=method)  # recompute_scale_factor left at None
  assert want.shape[:2] == (w0, h0)
  got = resize_grid(grid, (w0, h0), method, scale=scale)
  assert got.dtype == dtype and np.abs(got - want).max() <= TOLERANCE[dtype]


def test_same_size_with_a_scale_factor_copies_for_bilinear_only():
  """torch's bilinear kernel copies an equal-size grid; bicubic samples at the scaled positions."""
  grid = random_grid((14, 14), np.float64, seed=2)
  scale = 14.1 / 14
  assert np.array_equal(resize_grid(grid, (14, 14), "bilinear", scale=scale), grid)
  bicubic = resize_grid(grid, (14, 14), "bicubic", scale=scale)
  assert np.abs(bicubic - grid).max() > 0.01
  assert np.abs(bicubic - torch_resize(grid, scale=(scale, scale), method="bicubic")).max() <= 1e-12


def test_hand_computed_matrices():
  # Bilinear 2 -> 4: sources (d + 0.5) / 2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25.
  assert np.array_equal(interpolation_matrix(2, 4, "bilinear"),
                        [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
  # Bicubic 4 -> 2: sources 0.5 and 2.5; weights of Keys' cubic (A = -0.75) at t = 0.5 are
  # (-0.09375, 0.59375, 0.59375, -0.09375) on taps -1..2, clamped to the grid at the borders.
  np.testing.assert_allclose(interpolation_matrix(4, 2, "bicubic"),
                             [[-0.09375 + 0.59375, 0.59375, -0.09375, 0],
                              [0, -0.09375, 0.59375, 0.59375 - 0.09375]], rtol=0, atol=1e-15)
  for method in METHODS:  # every row is an affine combination
    np.testing.assert_allclose(interpolation_matrix(14, 21, method).sum(1), 1.0, atol=1e-12)
    assert interpolation_matrix(14, 21, method).dtype == np.float64


def test_bad_arguments_are_config_errors():
  with pytest.raises(ConfigError, match="method 'nearest' is not one of"):
    interpolation_matrix(4, 2, "nearest")
  with pytest.raises(ConfigError, match="output size 0 must be a positive integer"):
    interpolation_matrix(4, 0, "bicubic")
  with pytest.raises(ConfigError, match="scale factor -1.0 must be a positive number"):
    interpolation_matrix(4, 2, "bicubic", scale=-1.0)
  with pytest.raises(ConfigError, match=r"needs an \(h, w, channels\) array, got shape \(4, 4\)"):
    resize_grid(np.zeros((4, 4)), (2, 2), "bilinear")
