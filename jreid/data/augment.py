"""Optional training augmentations from FastReID's list, each drawing only from the given Generator.

HWC uint8 in, HWC uint8 out. Every random draw comes from the explicit
`np.random.Generator`, so an image's augmentation stays a pure function of
(seed, stream position) as `pipeline` promises. An op whose probability is 0
returns its input without drawing anything (and one with probability >= 1
draws no coin), so switching an op off leaves the draws of the others, and
hence existing streams, unchanged.

`pipeline.load_train` applies them in FastReID's `build_transforms` order:
AutoAugment on the decoded image, resize or random resized crop, flip,
pad + crop (FastReID pads before flipping; the two commute in distribution and
the repo keeps its original order), colour jitter, grayscale, blur (the
SimCLR / MoCo v2 colour-then-blur order; FastReID has neither), random
erasing, random patch (after erasing, as FastReID), cutout, normalise.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from jreid.data import transforms


def _happens(rng: np.random.Generator, p: float) -> bool:
  """A Bernoulli(p) coin that is only drawn when the outcome is uncertain."""
  if p <= 0:
    return False
  if p >= 1:
    return True
  return rng.random() < p


def random_resized_crop(image: np.ndarray, rng: np.random.Generator, size: tuple[int, int],
                        scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> np.ndarray:
  """torchvision's RandomResizedCrop: 10 tries at a box of random area and log-uniform aspect
  (width / height), else the centre crop clamped to the ratio range; bilinear resize to size."""
  height, width = image.shape[:2]
  area = height * width
  log_ratio = np.log(ratio[0]), np.log(ratio[1])
  for _ in range(10):
    target = area * rng.uniform(*scale)
    aspect = np.exp(rng.uniform(*log_ratio))
    w = int(round(np.sqrt(target * aspect)))
    h = int(round(np.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      break
  else:
    in_ratio = width / height
    if in_ratio < min(ratio):
      w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
      w, h = int(round(height * max(ratio))), height
    else:
      w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
  crop = np.ascontiguousarray(image[top:top + h, left:left + w])
  return transforms.resize(crop, size)


def _adjust_hue(image: Image.Image, hue: float) -> Image.Image:
  """Rotates the PIL HSV hue channel by hue x 255 (mod 256), as torchvision's adjust_hue."""
  h, s, v = image.convert("HSV").split()
  shift = int(hue * 255) % 256
  h = Image.fromarray(((np.asarray(h, np.int32) + shift) % 256).astype(np.uint8), "L")
  return Image.merge("HSV", (h, s, v)).convert("RGB")


def color_jitter(image: np.ndarray, rng: np.random.Generator, brightness: float = 0.0,
                 contrast: float = 0.0, saturation: float = 0.0, hue: float = 0.0,
                 p: float = 1.0) -> np.ndarray:
  """torchvision's ColorJitter on PIL images, applied with probability p (FastReID's CJ).

  Factors are uniform in [max(0, 1 - b), 1 + b] (hue in [-h, h]); the enabled ops
  run in a random order. As torchvision, the order is drawn before the factors.
  """
  ranges = [(max(0.0, 1 - brightness), 1 + brightness), (max(0.0, 1 - contrast), 1 + contrast),
            (max(0.0, 1 - saturation), 1 + saturation), (-hue, hue)]
  enabled = [lo != hi for lo, hi in ranges]
  if not any(enabled) or not _happens(rng, p):
    return image
  order = rng.permutation(4)
  factors = [rng.uniform(lo, hi) if on else None for (lo, hi), on in zip(ranges, enabled)]
  out = Image.fromarray(image)
  ops = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
  for index in order:
    if factors[index] is None:
      continue
    if index < 3:
      out = ops[index](out).enhance(factors[index])
    else:
      out = _adjust_hue(out, factors[index])
  return np.asarray(out)


def random_grayscale(image: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
  """ITU-R 601-2 luma (PIL's "L"), repeated on 3 channels, as torchvision's RandomGrayscale."""
  if not _happens(rng, p):
    return image
  gray = np.asarray(Image.fromarray(image).convert("L"))
  return np.repeat(gray[..., None], 3, axis=-1)


def solarize(image: np.ndarray, rng: np.random.Generator, p: float, threshold: int = 128) -> np.ndarray:
  """PIL's ImageOps.solarize: every channel value >= threshold inverted (255 - v), with probability p."""
  if not _happens(rng, p):
    return image
  return np.where(image >= threshold, 255 - image, image).astype(np.uint8)


def gaussian_kernel(kernel_size: int, sigma: float) -> np.ndarray:
  """torchvision's 1-D kernel: a Gaussian sampled at integer offsets from the centre, sum 1."""
  x = np.arange(kernel_size) - (kernel_size - 1) / 2
  kernel = np.exp(-0.5 * (x / sigma) ** 2)
  return kernel / kernel.sum()


def gaussian_blur(image: np.ndarray, rng: np.random.Generator, p: float, sigma=(0.1, 2.0),
                  kernel_size: int = 9) -> np.ndarray:
  """SimCLR's blur as torchvision's GaussianBlur: sigma uniform in the range, a separable
  kernel over reflect-padded borders, rounded back to uint8."""
  if kernel_size < 1 or kernel_size % 2 == 0:
    raise ValueError(f"blur kernel_size must be odd and positive, got {kernel_size}")
  if not _happens(rng, p):
    return image
  kernel = gaussian_kernel(kernel_size, rng.uniform(*sigma))
  height, width = image.shape[:2]
  r = kernel_size // 2
  padded = np.pad(image.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="reflect")
  rows = sum(weight * padded[:, i:i + width] for i, weight in enumerate(kernel))
  out = sum(weight * rows[i:i + height] for i, weight in enumerate(kernel))
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def cutout(image: np.ndarray, rng: np.random.Generator, p: float, size: int,
           fill=0) -> np.ndarray:
  """DeVries & Taylor 2017: a size x size square of `fill` centred at a uniform pixel,
  clipped at the borders (so it may cover less than size^2 near an edge)."""
  if not _happens(rng, p):
    return image
  height, width = image.shape[:2]
  cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
  top, left = cy - size // 2, cx - size // 2
  out = image.copy()
  out[max(top, 0):max(top + size, 0), max(left, 0):max(left + size, 0)] = np.asarray(fill, image.dtype)
  return out


def random_patch(image: np.ndarray, rng: np.random.Generator, p: float,
                 pool: Sequence[np.ndarray], area=(0.01, 0.5), min_aspect: float = 0.1,
                 flip_p: float = 0.5) -> np.ndarray:
  """FastReID's RandomPatch (Zhou et al., OSNet, ICCV 2019): with probability p, paste a patch
  cut from an earlier image at a uniform place, to simulate occlusion by other people/objects.

  FastReID keeps a per-worker FIFO of patches from the images that worker saw,
  which depends on thread scheduling. Here `pool` holds the earlier images
  themselves (the pipeline passes the previous N records of the global stream,
  decoded lazily) and the patch is cut from a uniformly chosen one at paste
  time: the same distribution as drawing from a FIFO of one patch per image,
  but a pure function of (image, rng, pool). Patch area is a fraction in `area`
  of the donor, its aspect h / w uniform in [min_aspect, 1 / min_aspect] (100
  tries, as FastReID), flipped left-right with probability flip_p.
  """
  if len(pool) == 0 or not _happens(rng, p):
    return image
  donor = pool[int(rng.integers(len(pool)))]
  dh, dw = donor.shape[:2]
  height, width = image.shape[:2]
  for _ in range(100):
    target = rng.uniform(*area) * dh * dw
    aspect = rng.uniform(min_aspect, 1 / min_aspect)
    h = int(round(np.sqrt(target * aspect)))
    w = int(round(np.sqrt(target / aspect)))
    if 0 < h < min(dh, height + 1) and 0 < w < min(dw, width + 1):
      break
  else:
    return image
  top, left = int(rng.integers(0, dh - h + 1)), int(rng.integers(0, dw - w + 1))
  patch = donor[top:top + h, left:left + w]
  if _happens(rng, flip_p):
    patch = patch[:, ::-1]
  y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
  out = image.copy()
  out[y:y + h, x:x + w] = patch
  return out


# AutoAugment's ImageNet policy (Cubuk et al., CVPR 2019, table 9): 25 sub-policies of two
# (op, probability, magnitude level 0..9) pairs, as torchvision's AutoAugmentPolicy.IMAGENET.
IMAGENET_POLICY = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
    (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
    (("Color", 0.4, 0), ("Equalize", 0.6, None)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
)

_LEVELS = 10  # torchvision's num_magnitude_bins: level i is the i-th of 10 evenly spaced values
_SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate",
           "Brightness", "Color", "Contrast", "Sharpness"}


def magnitude(op: str, level: int | None, height: int, width: int) -> float:
  """torchvision's IMAGENET magnitude for a level (unsigned; the caller picks the sign)."""
  if level is None:
    return 0.0
  top = {"ShearX": 0.3, "ShearY": 0.3, "Rotate": 30.0,
         "TranslateX": 150 / 331 * width, "TranslateY": 150 / 331 * height,
         "Brightness": 0.9, "Color": 0.9, "Contrast": 0.9, "Sharpness": 0.9}
  if op in top:
    return float(np.linspace(0.0, top[op], _LEVELS)[level])
  if op == "Posterize":  # 8 bits down to 4
    return float(8 - int(np.round(level / ((_LEVELS - 1) / 4))))
  if op == "Solarize":  # threshold 255 down to 0
    return float(np.linspace(255.0, 0.0, _LEVELS)[level])
  raise ValueError(f"op {op} takes no magnitude")


def apply_op(image: np.ndarray, op: str, value: float, fill=0) -> np.ndarray:
  """One AutoAugment op at a signed magnitude; geometric ops use nearest sampling and fill
  uncovered pixels with `fill`, as torchvision's AutoAugment defaults."""
  pil = Image.fromarray(image)
  fill = tuple(np.broadcast_to(np.asarray(fill, np.int64), (3,)).tolist())
  affine = {"ShearX": (1, value, 0, 0, 1, 0), "ShearY": (1, 0, 0, value, 1, 0),
            "TranslateX": (1, 0, -int(value), 0, 1, 0), "TranslateY": (1, 0, 0, 0, 1, -int(value))}
  enhance = {"Brightness": ImageEnhance.Brightness, "Color": ImageEnhance.Color,
             "Contrast": ImageEnhance.Contrast, "Sharpness": ImageEnhance.Sharpness}
  if op in affine:
    out = pil.transform(pil.size, Image.AFFINE, affine[op], resample=Image.NEAREST, fillcolor=fill)
  elif op == "Rotate":
    out = pil.rotate(value, resample=Image.NEAREST, fillcolor=fill)
  elif op in enhance:
    out = enhance[op](pil).enhance(1.0 + value)
  elif op == "Posterize":
    out = ImageOps.posterize(pil, int(value))
  elif op == "Solarize":
    out = ImageOps.solarize(pil, value)
  elif op == "AutoContrast":
    out = ImageOps.autocontrast(pil)
  elif op == "Equalize":
    out = ImageOps.equalize(pil)
  elif op == "Invert":
    out = ImageOps.invert(pil)
  else:
    raise ValueError(f"unknown AutoAugment op {op}")
  return np.asarray(out)


def auto_augment(image: np.ndarray, rng: np.random.Generator, p: float, fill=0) -> np.ndarray:
  """With probability p (FastReID SBS: 0.1), one uniformly chosen ImageNet sub-policy; each of
  its two ops runs with its own probability, signed magnitudes flip sign with probability 1/2.
  Draws as torchvision: policy index, two coins, two signs."""
  if not _happens(rng, p):
    return image
  policy = IMAGENET_POLICY[int(rng.integers(len(IMAGENET_POLICY)))]
  coins = rng.random(2)
  signs = rng.integers(0, 2, size=2)
  height, width = image.shape[:2]
  for (op, prob, level), coin, sign in zip(policy, coins, signs):
    if coin <= prob:
      value = magnitude(op, level, height, width)
      if op in _SIGNED and sign == 0:
        value = -value
      image = apply_op(image, op, value, fill)
  return image
