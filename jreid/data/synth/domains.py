"""Domain styles: the ranges a domain's cameras are drawn from.

A domain is one dataset's worth of cameras. Its style fixes where those cameras
stand (scene kinds) and how they see (brightness, white balance, haze,
resolution, blur, noise, compression), so two domains differ in their image
statistics as much as Market-1501 and CUHK03 do, while the cameras of one
domain still differ from each other inside those ranges.
"""
from __future__ import annotations

import dataclasses

import numpy as np

Range = tuple[float, float]
SCENES = ("indoor", "street", "park", "corridor", "plaza")


@dataclasses.dataclass(frozen=True)
class DomainStyle:
  scenes: tuple[str, ...]  # scene kinds the cameras pick from
  gain: Range  # exposure: < 1 dark, > 1 bright
  cast: tuple[float, float, float]  # the domain's white balance (R, G, B gains)
  cast_jitter: float  # how far each camera's white balance strays from it
  haze: Range = (0.0, 0.05)  # blend towards a flat grey: fog, glare, washed-out sensors
  contrast: Range = (0.9, 1.1)
  saturation: Range = (0.85, 1.1)
  lowres: Range = (1.0, 1.0)  # the camera samples at 1/lowres of the crop, then it is upsampled
  blur: Range = (0.0, 0.4)  # Gaussian sigma in output pixels
  noise: Range = (1.0, 3.0)  # sensor noise sigma on a 0..255 scale
  jpeg: Range = (80, 95)  # in-camera compression quality (>= 95: none)
  occlusion: Range = (0.15, 0.3)  # chance an image has something in front of the person
  scale: Range = (0.8, 0.92)  # person height / crop height


STYLES = {
    # An outdoor campus, like Market-1501's: the default single-domain set.
    # Its cameras share one site and differ mildly in white balance, as Market's do;
    # these ranges set the colour-histogram baseline (benchmarks/) at mAP ~5-8%.
    "campus": DomainStyle(scenes=("street", "plaza"), gain=(0.9, 1.05), cast=(1.0, 1.0, 1.0),
                          cast_jitter=0.035, blur=(0.0, 0.6), noise=(1.0, 4.0), jpeg=(70, 95),
                          occlusion=(0.1, 0.2), scale=(0.88, 0.97)),
    "mall_bright": DomainStyle(scenes=("indoor", "corridor"), gain=(1.2, 1.4), cast=(1.04, 1.0, 0.94),
                               cast_jitter=0.05, contrast=(0.95, 1.1), noise=(0.5, 1.5), jpeg=(90, 98)),
    "street_night": DomainStyle(scenes=("street", "plaza"), gain=(0.38, 0.55), cast=(0.8, 0.92, 1.3),
                                cast_jitter=0.08, contrast=(0.8, 0.95), saturation=(0.6, 0.8),
                                noise=(6.0, 10.0), blur=(0.3, 0.8), jpeg=(75, 90)),
    "lowres_grey": DomainStyle(scenes=("plaza", "corridor", "street"), gain=(0.85, 1.0), cast=(1.0, 1.0, 1.0),
                               cast_jitter=0.04, haze=(0.1, 0.2), contrast=(0.7, 0.85), saturation=(0.4, 0.6),
                               lowres=(3.0, 4.0), blur=(0.6, 1.2), noise=(2.0, 4.0), jpeg=(60, 80),
                               scale=(0.72, 0.86)),
    "sodium_warm": DomainStyle(scenes=("street", "indoor", "plaza"), gain=(0.75, 0.95),
                               cast=(1.35, 1.0, 0.55), cast_jitter=0.06, saturation=(0.9, 1.15),
                               noise=(3.0, 5.0), jpeg=(30, 50)),
    "fluor_green": DomainStyle(scenes=("corridor", "indoor"), gain=(1.25, 1.5), cast=(0.85, 1.2, 0.95),
                               cast_jitter=0.05, haze=(0.15, 0.25), contrast=(0.8, 0.9), noise=(2.0, 3.0)),
    "foggy_park": DomainStyle(scenes=("park",), gain=(0.85, 1.0), cast=(0.95, 1.0, 1.08), cast_jitter=0.04,
                              haze=(0.35, 0.5), contrast=(0.75, 0.9), saturation=(0.5, 0.7),
                              blur=(0.5, 1.0), lowres=(1.5, 2.0), scale=(0.7, 0.85)),
}


def random_style(rng: np.random.Generator) -> DomainStyle:
  """A style drawn from the whole range of the named ones: the many domains of the
  pre-training pool, each different from the labelled domains and from each other."""
  def span(lo, hi, width):
    a = rng.uniform(lo, hi - width)
    return (float(a), float(a + width))
  scenes = tuple(sorted(rng.choice(SCENES, size=rng.integers(1, 4), replace=False)))
  return DomainStyle(
      scenes=scenes, gain=span(0.4, 1.5, 0.2),
      cast=tuple(float(c) for c in np.exp(rng.normal(0, 0.18, 3))), cast_jitter=0.06,
      haze=span(0.0, 0.4, 0.1), contrast=span(0.7, 1.15, 0.1), saturation=span(0.4, 1.15, 0.2),
      lowres=span(1.0, 3.5, 0.5) if rng.random() < 0.4 else (1.0, 1.0), blur=span(0.0, 1.2, 0.3),
      noise=span(0.5, 9.0, 2.0), jpeg=span(35, 96, 10), scale=span(0.7, 0.93, 0.1))
