"""The unlabeled pre-training pool (LUPerson-like) and its tracklet-noisy labels ("-NL").

The pool's people walk through many extra domains, each with a style drawn at
random, so pre-training sees far more variety than any labelled domain. People
are filmed as tracklets: a few consecutive frames from one camera, with the
pose advancing and the box drifting. The labels are what a tracker would give:
one label per tracklet (so a person seen twice has two labels), and ID
switches that hand some frames another tracklet's label.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from jreid.data.synth import seeding
from jreid.data.synth.camera import Camera, sample_camera
from jreid.data.synth.domains import random_style
from jreid.data.synth.identity import sample_identity
from jreid.data.synth.plan import random_view
from jreid.data.synth.presets import PoolSpec
from jreid.data.synth.render import render, sample_framing

KEY_BASE = 1000  # pool domain k is keyed KEY_BASE + k, apart from the labelled domains


@dataclasses.dataclass(frozen=True)
class PoolShot:
  path: str  # relative to the pool folder
  domain: int
  person: int
  tracklet: int  # global tracklet number: the clean tracklet label
  frame: int
  cam: Camera
  view: str
  label: int  # the noisy label


def pool_cameras(spec: PoolSpec, seed: int) -> list[tuple[Camera, ...]]:
  """Each pool domain: a random style and two to four cameras from it."""
  out, number = [], 1
  for k in range(spec.domains):
    rng = seeding.rng(seed, KEY_BASE + k, seeding.POOL)
    style = random_style(rng)
    n = int(rng.integers(2, 5))
    out.append(tuple(sample_camera(style, seed, KEY_BASE + k, i, number + i) for i in range(n)))
    number += n
  return out


def plan_pool(spec: PoolSpec, seed: int) -> list[PoolShot]:
  cameras = pool_cameras(spec, seed)
  tracks = []  # (domain, person, cam, view, frames)
  for person in range(spec.people):
    k = person % spec.domains
    cams = cameras[k]
    rng = seeding.rng(seed, KEY_BASE + k, seeding.TRACK, person)
    n = int(rng.integers(spec.tracklets[0], spec.tracklets[1] + 1))
    order = rng.permutation(len(cams))
    for t in range(n):
      cam = cams[order[t % len(cams)]]
      frames = int(rng.integers(spec.frames[0], spec.frames[1] + 1))
      tracks.append((k, person, cam, random_view(rng, cam), frames))
  by_domain = {}
  for g, track in enumerate(tracks):
    by_domain.setdefault(track[0], []).append(g)
  shots = []
  for g, (k, person, cam, view, frames) in enumerate(tracks):
    others = [h for h in by_domain[k] if h != g]
    for f in range(frames):
      rng = seeding.rng(seed, KEY_BASE, seeding.LABELS, g, f)
      switched = bool(others) and rng.random() < spec.label_noise
      label = others[int(rng.integers(len(others)))] if switched else g
      path = f"images/p{k:02d}/c{cam.number}_{g:06d}_{f:02d}.jpg"
      shots.append(PoolShot(path, k, person, g, f, cam, view, label))
  return shots


def draw_pool(shot: PoolShot, seed: int) -> Image.Image:
  """One frame of a tracklet: the tracklet's framing, advanced by ``frame`` steps."""
  key = KEY_BASE + shot.domain
  ident = sample_identity(seeding.rng(seed, key, seeding.IDENTITY, shot.person))
  rng = seeding.rng(seed, key, seeding.TRACK, shot.tracklet, 1)
  base = sample_framing(rng, shot.cam)
  step_x, step_u = rng.normal(0, 0.015), rng.normal(0, 0.03)
  framing = dataclasses.replace(base, phase=base.phase + 0.8 * shot.frame, dx=base.dx + step_x * shot.frame,
                                u=float(np.clip(base.u + step_u * shot.frame, 0, 1)))
  frame_rng = seeding.rng(seed, key, seeding.IMAGE, shot.tracklet, shot.frame)
  return render(shot.cam, ident, shot.view, framing, frame_rng)
