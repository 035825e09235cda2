"""DINO's multi-crop views (Caron et al. 2021) as TransReID-SSL uses them on person images.

Per image: 2 global crops (256x128, area scale (0.4, 1)) and 8 local crops
(128x64, scale (0.05, 0.4)), each a random resized crop, a flip, colour
jitter (0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale with p 0.2, then a Gaussian
blur (sigma 0.1-2) with p 1.0 on the first global crop, 0.1 on the second and
0.5 on every local crop, and a solarisation with p 0.2 on the second global
crop only (DINO's `DataAugmentationDINO`), normalised with ImageNet's
mean/std (METHODS.md). The crops are bilinear resizes (torchvision's DINO uses
bicubic; the shapes of the paper do not depend on it).

Every random choice of image `i` at stream position `p` comes from
`default_rng([seed, p, crop])`, so a batch is a pure function of (seed,
position) and a resumed pipeline continues the same stream.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import grain
import numpy as np

from jreid.data import augment, pipeline, transforms
from jreid.data.records import Record


@dataclasses.dataclass(frozen=True)
class MultiCrop:
  global_size: tuple[int, int] = (256, 128)
  local_size: tuple[int, int] = (128, 64)
  num_global: int = 2
  num_local: int = 8
  global_scale: tuple[float, float] = (0.4, 1.0)
  local_scale: tuple[float, float] = (0.05, 0.4)
  color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
  color_jitter_p: float = 0.8
  grayscale_p: float = 0.2
  blur_kernel: int = 9
  mean: tuple[float, float, float] = transforms.IMAGENET_MEAN
  std: tuple[float, float, float] = transforms.IMAGENET_STD

  def blur_p(self, crop: int) -> float:
    """DINO's blur probabilities: always on the first global crop, rarely on the second."""
    if crop < self.num_global:
      return 1.0 if crop == 0 else 0.1
    return 0.5

  def solarize_p(self, crop: int) -> float:
    return 0.2 if crop == 1 else 0.0


def crop_view(image: np.ndarray, spec: MultiCrop, crop: int, rng: np.random.Generator) -> np.ndarray:
  """Crop `crop` (0, 1: global; then local) of a uint8 image, normalised float32."""
  is_global = crop < spec.num_global
  size, scale = ((spec.global_size, spec.global_scale) if is_global
                 else (spec.local_size, spec.local_scale))
  view = augment.random_resized_crop(image, rng, size, scale)
  view = transforms.random_flip(view, rng, 0.5)
  view = augment.color_jitter(view, rng, *spec.color_jitter, p=spec.color_jitter_p)
  view = augment.random_grayscale(view, rng, spec.grayscale_p)
  view = augment.gaussian_blur(view, rng, spec.blur_p(crop), kernel_size=spec.blur_kernel)
  view = augment.solarize(view, rng, spec.solarize_p(crop))
  return transforms.normalize(view, spec.mean, spec.std)


def views(image: np.ndarray, spec: MultiCrop, seed: int, position: int) -> dict[str, np.ndarray]:
  """{'global': (num_global, H, W, 3), 'local': (num_local, h, w, 3)} of one image."""
  crops = [crop_view(image, spec, c, np.random.default_rng([seed, position, c]))
           for c in range(spec.num_global + spec.num_local)]
  out = {"global": np.stack(crops[:spec.num_global])}
  if spec.num_local:
    out["local"] = np.stack(crops[spec.num_global:])
  return out


def multicrop_dataset(records: Sequence[Record], *, spec: MultiCrop, batch_size: int,
                      num_steps: int, seed: int, host: int = 0, num_hosts: int = 1,
                      num_threads: int = 2, workers: int = 0) -> grain.IterDataset:
  """Batches of {'global': (B, G, H, W, 3), 'local': (B, L, h, w, 3)}, this host's part; each epoch
  a fresh permutation of the unlabelled pool (`pipeline.ImageSampler`), labels not read."""
  stream = pipeline.HostStream(pipeline.ImageSampler(len(records), batch_size, seed), num_steps,
                               host, num_hosts)

  def load(item):
    position, index = item
    return views(transforms.decode_record(records[index]), spec, seed, position)

  return pipeline.batches(stream, load, num_threads, workers)
