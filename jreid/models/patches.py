"""Cutting a batch of images into a grid of patches, and each patch's horizontal mirror.

UP-ReID splits each augmented view into `rows` horizontal stripes, each cut
into `cols` pieces (the paper: 4 x 2 = 8 patches), after augmentation so every
patch of a view shares its crop and colour. Patch `i` is grid cell
(i // cols, i % cols), left to right within a stripe, stripes top to bottom.
"""
from __future__ import annotations

import jax
import numpy as np


def partition(images: jax.Array, rows: int, cols: int) -> jax.Array:
  """(B, H, W, C) -> (rows * cols, B, H / rows, W / cols, C), patch-major."""
  b, h, w, c = images.shape
  if h % rows or w % cols:
    raise ValueError(f"images of {h}x{w} do not split into {rows}x{cols} equal patches")
  grid = images.reshape(b, rows, h // rows, cols, w // cols, c)
  return grid.transpose(1, 3, 0, 2, 4, 5).reshape(rows * cols, b, h // rows, w // cols, c)


def mirror_index(rows: int, cols: int) -> np.ndarray:
  """For each patch, the patch at the same height on the other side of the vertical axis.

  The horizontal-symmetry prior of UP-ReID's hard mining: a person's left and
  right halves look alike, so they make a hard but semantically matched pair.
  """
  row, col = np.divmod(np.arange(rows * cols), cols)
  return row * cols + (cols - 1 - col)
