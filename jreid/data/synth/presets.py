"""Named SynthPerson presets: how many domains, cameras, ids and images each has.

Presets are small frozen dataclasses rather than config files so a preset is
hashable, printable and checked by the type system; adding one is adding an
entry to ``PRESETS``.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DomainSpec:
  """One Market-layout dataset."""
  name: str
  style: str  # a key of domains.STYLES
  cameras: int
  train_ids: int
  test_ids: int
  train_images: tuple[int, int] = (10, 14)  # per id, inclusive
  gallery_per_camera: tuple[int, int] = (1, 3)  # per test id, in each camera it passes
  query_cameras: tuple[int, int] = (1, 2)  # cameras a test id is queried from (one image each)
  distractors: int = 0  # pid 0000 gallery images: strangers and empty scenes
  junk: int = 0  # pid -1 gallery images: badly cut boxes, ignored by the protocol
  unseen: bool = False  # held out for domain generalisation: never trained on


@dataclasses.dataclass(frozen=True)
class PoolSpec:
  """The unlabeled pre-training pool (LUPerson-like) and its tracklet-noisy labels."""
  domains: int  # each with a randomly drawn style
  people: int
  tracklets: tuple[int, int] = (1, 3)  # per person, each from one camera
  frames: tuple[int, int] = (3, 6)  # per tracklet
  label_noise: float = 0.1  # chance an image carries another tracklet's label (ID switch)


@dataclasses.dataclass(frozen=True)
class Preset:
  name: str
  about: str
  domains: tuple[DomainSpec, ...]
  pool: PoolSpec | None = None


def _seen(name, style):
  return DomainSpec(name, style, cameras=4, train_ids=100, test_ids=80, train_images=(8, 12),
                    gallery_per_camera=(1, 3), distractors=100, junk=30)


def _unseen(name, style):
  return DomainSpec(name, style, cameras=3, train_ids=40, test_ids=60, train_images=(6, 8),
                    distractors=60, junk=15, unseen=True)


PRESETS = {p.name: p for p in (
    Preset("tiny", "unit tests: one domain, ~300 images, a few seconds",
           (DomainSpec("d0", "campus", cameras=4, train_ids=16, test_ids=16, train_images=(6, 10),
                       distractors=20, junk=8),)),
    Preset("tiny_multi", "unit tests of multi-domain code: three small domains and a tiny pool",
           (DomainSpec("d0", "mall_bright", cameras=3, train_ids=6, test_ids=6, train_images=(4, 6),
                       distractors=6, junk=3),
            DomainSpec("d1", "street_night", cameras=3, train_ids=6, test_ids=6, train_images=(4, 6),
                       distractors=6, junk=3),
            DomainSpec("u0", "sodium_warm", cameras=2, train_ids=4, test_ids=6, train_images=(4, 6),
                       distractors=6, junk=3, unseen=True)),
           PoolSpec(domains=3, people=10, tracklets=(1, 2), frames=(2, 4))),
    Preset("small", "the CPU quickstart: one Market-like domain with 6 cameras, ~5k images",
           (DomainSpec("d0", "campus", cameras=6, train_ids=200, test_ids=180, train_images=(10, 14),
                       gallery_per_camera=(1, 3), distractors=300, junk=80),)),
    Preset("medium", "GPU-scale single domain: 500 + 500 ids, 6 cameras, ~14k images",
           (DomainSpec("d0", "campus", cameras=6, train_ids=500, test_ids=500, train_images=(10, 16),
                       gallery_per_camera=(1, 4), distractors=1000, junk=300),)),
    Preset("lreid", "lifelong / domain generalisation: 4 seen domains in order, 2 unseen, a pool",
           (_seen("d0", "mall_bright"), _seen("d1", "street_night"), _seen("d2", "lowres_grey"),
            _seen("d3", "sodium_warm"), _unseen("u0", "fluor_green"), _unseen("u1", "foggy_park")),
           PoolSpec(domains=12, people=400)),
)}


def get_preset(name: str) -> Preset:
  if name not in PRESETS:
    raise ValueError(f"unknown SynthPerson preset {name!r}; known presets: {', '.join(PRESETS)}")
  return PRESETS[name]

