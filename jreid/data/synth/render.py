"""One picture: a camera's scene, a person (or none), maybe an occluder, then the camera.

``render`` is a pure function of its arguments, which is what lets images be
generated in any order. Everything that tracks a person through consecutive
frames (pose, box, background window) sits in ``Framing``, so a tracklet is
one framing nudged frame by frame.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from jreid.data.synth import camera as camera_lib
from jreid.data.synth.figure import VIEWS, Pose, draw_person
from jreid.data.synth.identity import Identity, sample_identity

SUPERSAMPLE = 2  # people are drawn at 2x and reduced, for anti-aliased edges


@dataclasses.dataclass(frozen=True)
class Framing:
  phase: float  # walking cycle
  stride: float
  scale: float  # person height / crop height
  dx: float  # box shift, as a fraction of the crop width (+ moves the person right)
  dy: float  # as a fraction of the crop height
  zoom: float  # background window / crop size
  u: float  # where the window sits in the camera's scene, 0..1
  v: float


def sample_framing(rng: np.random.Generator, cam: camera_lib.Camera) -> Framing:
  """Pose and detector-box jitter of one sighting."""
  return Framing(phase=float(rng.uniform(0, 2 * np.pi)), stride=float(rng.uniform(0.2, 1.0)),
                 scale=float(rng.uniform(*cam.scale)), dx=float(rng.normal(0, 0.05)),
                 dy=float(rng.normal(0, 0.025)), zoom=float(rng.uniform(0.85, 1.25)),
                 u=float(rng.random()), v=float(rng.random()))


def _person_layer(size, ident: Identity, view: str, framing: Framing):
  """The person's premultiplied colour and coverage at output resolution."""
  h, w = size
  s = SUPERSAMPLE
  layer = Image.new("RGBA", (w * s, h * s), (0, 0, 0, 0))
  height = framing.scale * h * s
  top = (h * s - height) / 2 + framing.dy * h * s
  cx = w * s / 2 + framing.dx * w * s
  draw_person(layer, ident, Pose(view, framing.phase, framing.stride), cx, top, height)
  arr = np.asarray(layer, np.float32).reshape(h, s, w, s, 4)
  alpha = arr[..., 3] / 255.0
  colour = (arr[..., :3] * alpha[..., None]).mean(axis=(1, 3))
  return colour, alpha.mean(axis=(1, 3))


def _shaded(colour, size, framing: Framing):
  """Rounds the flat figure: darker towards its silhouette's sides and its feet."""
  h, w = size
  cx = w / 2 + framing.dx * w
  half = 0.16 * framing.scale * h
  xs = np.clip(1.0 - 0.3 * ((np.arange(w) - cx) / half) ** 2, 0.7, 1.0)
  ys = np.linspace(1.06, 0.88, h)
  return colour * xs[None, :, None] * ys[:, None, None]


def _shadow(bg, size, framing: Framing):
  h, w = size
  cx = w / 2 + framing.dx * w
  feet = h / 2 + framing.dy * h + framing.scale * h / 2
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  d = ((xx - cx) / (0.2 * framing.scale * h)) ** 2 + ((yy - feet) / (0.03 * framing.scale * h)) ** 2
  return bg * (1 - 0.4 * np.exp(-d))[..., None]


CLUTTER = ((180, 40, 40), (40, 70, 150), (220, 200, 60), (60, 120, 60), (90, 60, 40), (30, 30, 30),
           (200, 200, 200), (150, 90, 160))


def _vary_background(bg, rng: np.random.Generator):
  """What changes behind a person from one frame to the next in a fixed camera: uneven
  light, a passing shadow, things left about (bikes, bins, bags, a parked cart)."""
  h, w, _ = bg.shape
  yy = np.linspace(-0.5, 0.5, h)[:, None]
  xx = np.linspace(-0.5, 0.5, w)[None, :]
  light = 1 + rng.normal(0, 0.18) * xx + rng.normal(0, 0.18) * yy
  if rng.random() < 0.4:
    x0 = rng.uniform(-0.5, 0.5)
    light = light * np.where(xx * rng.choice((-1, 1)) > x0, rng.uniform(0.55, 0.8), 1.0)
  out = bg * light[..., None].astype(np.float32)
  for _ in range(rng.choice(3, p=(0.5, 0.35, 0.15))):
    ch, cw = int(rng.integers(8, h // 4)), int(rng.integers(6, w // 3))
    y0, x0 = int(rng.integers(h // 3, h - ch)), int(rng.integers(-cw // 2, w - cw // 2))
    colour = np.asarray(CLUTTER[rng.integers(len(CLUTTER))], np.float32) * rng.uniform(0.7, 1.1)
    out[y0:y0 + ch, max(0, x0):max(0, x0 + cw)] = colour
  return out


def _occluder(rng: np.random.Generator, size, out):
  """Something between the camera and the person: a bin, a pole, or another passer-by."""
  h, w = size
  kind = rng.choice(3, p=(0.45, 0.2, 0.35))
  if kind == 2:
    ident = sample_identity(rng)
    side = rng.choice((-1, 1))
    framing = Framing(phase=float(rng.uniform(0, 6.3)), stride=0.6, scale=float(rng.uniform(0.95, 1.15)),
                      dx=float(side * rng.uniform(0.45, 0.7)), dy=float(rng.uniform(0.0, 0.1)),
                      zoom=1.0, u=0.0, v=0.0)
    colour, alpha = _person_layer(size, ident, VIEWS[rng.integers(4)], framing)
    return out * (1 - alpha[..., None]) + _shaded(colour, size, framing)
  out = out.copy()
  shade = rng.uniform(40, 200) * np.exp(rng.normal(0, 0.25, 3))
  if kind == 0:
    bh, bw = int(rng.uniform(0.15, 0.4) * h), int(rng.uniform(0.3, 0.8) * w)
    x0 = int(rng.integers(-bw // 2, w - bw // 2))
    out[h - bh:, max(0, x0):max(0, x0 + bw)] = shade
    out[h - bh:h - bh + 3, max(0, x0):max(0, x0 + bw)] = shade * 0.7
  else:
    pw = int(rng.integers(3, 9))
    x0 = int(rng.integers(0, w - pw))
    out[:, x0:x0 + pw] = shade * 0.6
  return out


def render(cam: camera_lib.Camera, ident: Identity | None, view: str, framing: Framing,
           rng: np.random.Generator, size: tuple[int, int] = (128, 64),
           occlude: bool | None = None) -> Image.Image:
  """The camera's picture of ``ident`` (or of its empty scene when None).

  ``rng`` supplies what changes between any two frames: occlusion, exposure,
  noise. ``occlude`` forces or forbids an occluder; None leaves it to chance.
  """
  bg = _vary_background(camera_lib.crop_backdrop(cam, size, framing.zoom, framing.u, framing.v), rng)
  if ident is not None:
    bg = _shadow(bg, size, framing)
    colour, alpha = _person_layer(size, ident, view, framing)
    out = bg * (1 - alpha[..., None]) + _shaded(colour, size, framing)
  else:
    out = bg
  if occlude is None:
    occlude = rng.random() < cam.occlusion
  if occlude:
    out = _occluder(rng, size, out)
  return camera_lib.capture(out, cam, rng)
