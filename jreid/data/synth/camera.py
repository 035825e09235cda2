"""A camera: its scene, the viewpoints it tends to see, and how it turns light into JPEG bytes.

The capture order follows a real camera: exposure and white balance, haze,
optical blur, sampling at the sensor's resolution, sensor noise, then the
image processor's contrast and saturation and its JPEG compression.
"""
from __future__ import annotations

import dataclasses
import functools
import io

import numpy as np
from PIL import Image, ImageFilter

from jreid.data.synth import scene, seeding
from jreid.data.synth.domains import DomainStyle


@dataclasses.dataclass(frozen=True)
class Camera:
  number: int  # 1-based camera number written into file names
  seed: int
  domain_key: int
  scene: str
  gain: float
  cast: tuple[float, float, float]
  haze: float
  contrast: float
  saturation: float
  lowres: float
  blur: float
  noise: float
  jpeg: int
  occlusion: float
  scale: tuple[float, float]
  views: tuple[float, float, float]  # chance a passer-by is seen from the front, back, side


def sample_camera(style: DomainStyle, seed: int, domain_key: int, local: int, number: int) -> Camera:
  """Camera ``local`` (0-based within its domain) of a domain with this style."""
  rng = seeding.rng(seed, domain_key, seeding.CAMERA, local)
  u = lambda r: float(rng.uniform(*r))
  cast = np.asarray(style.cast) * np.exp(rng.normal(0, style.cast_jitter, 3))
  return Camera(
      number=number, seed=seed, domain_key=domain_key,
      scene=style.scenes[rng.integers(len(style.scenes))],
      gain=u(style.gain), cast=tuple(float(c) for c in cast), haze=u(style.haze),
      contrast=u(style.contrast), saturation=u(style.saturation), lowres=u(style.lowres),
      blur=u(style.blur), noise=u(style.noise), jpeg=int(round(u(style.jpeg))),
      occlusion=u(style.occlusion), scale=style.scale,
      views=tuple(float(v) for v in rng.dirichlet((1.6, 1.6, 1.3))))


@functools.lru_cache(maxsize=128)
def backdrop(camera: Camera) -> np.ndarray:
  """The camera's fixed scene; cached because every image of the camera crops it."""
  site = seeding.rng(camera.seed, camera.domain_key, seeding.CAMERA, 0, 0)
  rng = seeding.rng(camera.seed, camera.domain_key, seeding.CAMERA, camera.number, 1)
  out = scene.draw_scene(camera.scene, site, rng)
  out.setflags(write=False)
  return out


def crop_backdrop(camera: Camera, size: tuple[int, int], zoom: float, u: float, v: float) -> np.ndarray:
  """A window of the camera's scene ``zoom`` times the crop size at relative position
  (u, v) in [0, 1], resized to ``size`` (h, w)."""
  h, w = size
  strip = backdrop(camera)
  ch = min(strip.shape[0], int(round(h * zoom)))
  cw = min(strip.shape[1], int(round(w * zoom)))
  y = int(round(v * (strip.shape[0] - ch)))
  x = int(round(u * (strip.shape[1] - cw)))
  window = strip[y:y + ch, x:x + cw]
  if (ch, cw) == (h, w):
    return window.copy()
  img = Image.fromarray(np.uint8(window)).resize((w, h), Image.BILINEAR)
  return np.asarray(img, np.float32)


def capture(radiance: np.ndarray, camera: Camera, rng: np.random.Generator) -> Image.Image:
  """Turns a float (h, w, 3) scene into the camera's 8-bit picture of it."""
  h, w, _ = radiance.shape
  gain = camera.gain * float(np.exp(rng.normal(0, 0.08)))  # clouds, lamps, auto-exposure
  x = radiance * (gain * np.asarray(camera.cast, np.float32))
  haze = camera.haze + abs(float(rng.normal(0, 0.02)))
  x = x * (1 - haze) + haze * 200.0
  img = Image.fromarray(np.uint8(np.clip(x, 0, 255)))
  sigma = camera.blur + abs(float(rng.normal(0, 0.25)))
  if sigma > 0.2:
    img = img.filter(ImageFilter.GaussianBlur(sigma))
  if camera.lowres > 1.05:
    small = (max(4, int(round(w / camera.lowres))), max(4, int(round(h / camera.lowres))))
    img = img.resize(small, Image.BILINEAR, reducing_gap=None).resize((w, h), Image.BILINEAR)
  x = np.asarray(img, np.float32)
  x = x + rng.normal(0, camera.noise, x.shape).astype(np.float32)
  mean = x.mean()
  x = mean + camera.contrast * (x - mean)
  grey = x.mean(axis=2, keepdims=True)
  x = grey + camera.saturation * (x - grey)
  img = Image.fromarray(np.uint8(np.clip(x, 0, 255)))
  if camera.jpeg < 95:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=camera.jpeg)
    img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
  return img
