"""Per-example image transforms (numpy/PIL), each taking an explicit numpy Generator.

Images are HWC uint8 until `normalize`, float32 after. The order and values
follow FastReID's bag-of-tricks: resize, flip, pad + random crop, random
erasing filled with the ImageNet mean, normalise.
"""
from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

from jreid.errors import ImageReadError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# What PIL raises on a damaged, truncated or mislabelled file (found by corrupting JPEG, PNG,
# BMP, GIF, TIFF and WebP files byte by byte), a folder or a missing file (OSError), and on a
# header claiming more than twice `Image.MAX_IMAGE_PIXELS` (DecompressionBombError). The
# warning is an exception only where warnings are made errors; see `decode`.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, OverflowError, struct.error,
                 Image.DecompressionBombError, Image.DecompressionBombWarning)


def decode_record(record) -> np.ndarray:
  """`decode` of a `Record`'s image: its stored bytes where it has them (a tfds build), else its path."""
  if record.stored is None:
    return decode(record.path)
  return decode(io.BytesIO(record.stored()), name=record.path)


def decode(path, name: str | None = None) -> np.ndarray:
  """The image at `path` (or in a file object) as HWC uint8 RGB; an `ImageReadError` naming the
  file (`name`, else `path`) if it cannot be.

  A header claiming more than `PIL.Image.MAX_IMAGE_PIXELS` pixels (PIL warns,
  and decodes up to twice that) is refused as well: no person crop is that
  large, and decoding one per training step would exhaust memory long
  before it failed. Raising `Image.MAX_IMAGE_PIXELS` (or setting it to None)
  lets such files through, as it does for PIL itself.
  """
  limit = Image.MAX_IMAGE_PIXELS
  try:
    with Image.open(path) as image:
      width, height = image.size
      if limit is None or width * height <= limit:
        return np.asarray(image.convert("RGB"))
  except DECODE_ERRORS as err:
    bomb = isinstance(err, (Image.DecompressionBombError, Image.DecompressionBombWarning))
    raise ImageReadError(f"cannot read image {name or path}: {err}{_BOMB_HINT if bomb else ''}") from None
  raise ImageReadError(f"cannot read image {name or path}: its header claims {width}x{height} = "
                       f"{width * height} pixels, more than the limit of {limit}{_BOMB_HINT}")


_BOMB_HINT = (" (PIL's decompression-bomb guard, PIL.Image.MAX_IMAGE_PIXELS; a person crop has a "
              "few thousand pixels: is the file damaged?)")


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Bilinear resize to (height, width), as torchvision's Resize on PIL images."""
  height, width = size
  if image.shape[:2] == (height, width):
    return image
  return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def random_flip(image: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
  return image[:, ::-1] if rng.random() < p else image


def pad_crop(image: np.ndarray, rng: np.random.Generator, padding: int = 10) -> np.ndarray:
  """Zero-pads every side then crops the original size at a uniform offset."""
  if padding <= 0:
    return image
  height, width = image.shape[:2]
  padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
  top = rng.integers(0, 2 * padding + 1)
  left = rng.integers(0, 2 * padding + 1)
  return padded[top:top + height, left:left + width]


def random_erase(image: np.ndarray, rng: np.random.Generator, p: float = 0.5,
                 area=(0.02, 0.4), aspect=(0.3, 3.33),
                 fill=tuple(round(255 * m) for m in IMAGENET_MEAN)) -> np.ndarray:
  """Zhong et al.'s random erasing; up to 100 tries to fit a box, as the reference."""
  if rng.random() >= p:
    return image
  height, width = image.shape[:2]
  for _ in range(100):
    target = rng.uniform(*area) * height * width
    ratio = np.exp(rng.uniform(np.log(aspect[0]), np.log(aspect[1])))
    h = int(round(np.sqrt(target * ratio)))
    w = int(round(np.sqrt(target / ratio)))
    if 0 < h < height and 0 < w < width:
      top = rng.integers(0, height - h + 1)
      left = rng.integers(0, width - w + 1)
      image = image.copy()
      image[top:top + h, left:left + w] = np.asarray(fill, image.dtype)
      return image
  return image


def normalize(image: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
  image = image.astype(np.float32) / 255.0
  return (image - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
