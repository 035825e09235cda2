"""Resizing a token grid (a ViT's position embeddings) exactly as torch's `F.interpolate` does.

A checkpoint's position embeddings were trained on one grid (CLIP and DINO
ViT-B/16 at 224: 14x14) and a ReID model runs on another (256x128: 16x8).
The projects jreid reproduces resize them with
`F.interpolate(..., mode="bicubic" | "bilinear", align_corners=False)`, some
with an explicit `scale_factor` (DINO's `interpolate_pos_encoding` passes
`(w0 + 0.1) / sqrt(N)`), and their published numbers depend on exactly those
values. Both modes are separable, so a resize is one (n_out, n_in) matrix per
axis, built here in float64 as plain numpy constants: applied at load time
(`resize_grid`) or as constants inside a jitted forward pass.

torch's rules (CPU, no antialiasing): the source coordinate of output index
`d` is `(d + 0.5) * r - 0.5` with `r = n_in / n_out`, or `r = 1 / scale`
when a scale factor is given. Bilinear clamps a negative coordinate to 0 and
blends the two taps `i0 = floor(x)` and `min(i0 + 1, n_in - 1)`; bicubic uses
Keys' cubic with A = -0.75 on the taps `floor(x) - 1 .. floor(x) + 2`, each
index clamped into the grid (the border value repeats). torch's bilinear
kernel copies the input when the output grid has the input's size whatever
the scale factor; its bicubic kernel does not (`grid_matrices`).
"""
from __future__ import annotations

import numpy as np

from jreid.errors import ConfigError

METHODS = ("bilinear", "bicubic")
CUBIC_A = -0.75  # torch's (and OpenCV's) choice for Keys' cubic convolution


def _check(n_in: int, n_out: int, method: str, scale) -> None:
  if method not in METHODS:
    raise ConfigError(f"grid resize method {method!r} is not one of {METHODS}")
  for label, n in (("input", n_in), ("output", n_out)):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
      raise ConfigError(f"grid resize {label} size {n!r} must be a positive integer")
  if scale is not None and not (np.isfinite(scale) and scale > 0):
    raise ConfigError(f"grid resize scale factor {scale!r} must be a positive number")


def _cubic_weights(t: np.ndarray) -> np.ndarray:
  """Weights of the taps at offsets -1, 0, 1, 2 for fractional positions `t` in [0, 1): (n, 4)."""
  a = CUBIC_A

  def near(x):  # |x| <= 1
    return ((a + 2) * x - (a + 3)) * x * x + 1

  def far(x):  # 1 < |x| < 2
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

  return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def interpolation_matrix(n_in: int, n_out: int, method: str, scale: float | None = None
                         ) -> np.ndarray:
  """The (n_out, n_in) float64 matrix of a 1-D `F.interpolate(align_corners=False)`.

  `scale` is torch's `scale_factor` for this axis (the output size is still
  `n_out`, which torch would make `floor(n_in * scale)`); without it the
  ratio is `n_in / n_out`.
  """
  _check(n_in, n_out, method, scale)
  ratio = n_in / n_out if scale is None else 1.0 / scale
  source = (np.arange(n_out, dtype=np.float64) + 0.5) * ratio - 0.5
  matrix = np.zeros((n_out, n_in))
  rows = np.arange(n_out)
  if method == "bilinear":
    source = np.maximum(source, 0.0)
    low = np.floor(source).astype(np.int64)
    frac = source - low
    high = np.minimum(low + 1, n_in - 1)
    low = np.minimum(low, n_in - 1)
    np.add.at(matrix, (rows, low), 1.0 - frac)
    np.add.at(matrix, (rows, high), frac)
    return matrix
  low = np.floor(source).astype(np.int64)
  weights = _cubic_weights(source - low)
  for tap in range(4):
    np.add.at(matrix, (rows, np.clip(low - 1 + tap, 0, n_in - 1)), weights[:, tap])
  return matrix


def _pair(scale):
  if scale is None or np.ndim(scale) == 0:
    return scale, scale
  if len(scale) != 2:
    raise ConfigError(f"grid resize scale {scale!r} must be one number or a (height, width) pair")
  return tuple(scale)


def grid_matrices(size: tuple[int, int], new_size: tuple[int, int], method: str,
                  scale: float | tuple[float, float] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
  """(rows, columns) matrices resizing an (h, w) grid to `new_size` as torch does.

  `scale` is torch's `scale_factor`: one number or (height, width). For
  bilinear, a grid resized to its own size is copied, as torch's kernel
  does even with a scale factor that is not 1.
  """
  (h, w), (h2, w2) = tuple(size), tuple(new_size)
  scale_h, scale_w = _pair(scale)
  if method == "bilinear" and (h, w) == (h2, w2):
    scale_h = scale_w = None
  return (interpolation_matrix(h, h2, method, scale_h),
          interpolation_matrix(w, w2, method, scale_w))


def resize_grid(grid: np.ndarray, new_size: tuple[int, int], method: str,
                scale: float | tuple[float, float] | None = None) -> np.ndarray:
  """An (h, w, C) grid resized to (h2, w2, C) like `F.interpolate` of its (1, C, h, w) transpose.

  Computed in float64; the result has the input's dtype.
  """
  grid = np.asarray(grid)
  if grid.ndim != 3:
    raise ConfigError(f"grid resize needs an (h, w, channels) array, got shape {grid.shape}")
  rows, cols = grid_matrices(grid.shape[:2], new_size, method, scale)
  out = np.einsum("ah,bw,hwc->abc", rows, cols, grid.astype(np.float64), optimize=True)
  return out.astype(grid.dtype)
