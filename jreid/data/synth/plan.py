"""Which images a labelled domain has, and how to draw any one of them on its own.

Planning fixes every image's split, file name, camera, viewpoint and random
key before anything is drawn; ``draw`` then depends on one ``Shot`` and its
``Domain`` only, so images can be drawn in any order, or in parallel.

Person ids and camera numbers run on across the domains of a preset (domain 1
starts after domain 0's last id and camera): the domains are different people
seen by different cameras, and the file names say so even when the folders
are merged without ``records.combine``.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from jreid.data.synth import seeding
from jreid.data.synth.camera import Camera, sample_camera
from jreid.data.synth.domains import STYLES
from jreid.data.synth.identity import sample_identity
from jreid.data.synth.presets import DomainSpec
from jreid.data.synth.render import Framing, render, sample_framing

_KIND_CODE = {"person": 0, "distractor": 1, "junk": 2}
MAIN_VIEW = 0.75  # chance an image of a person in a camera shows the usual side for that camera


@dataclasses.dataclass(frozen=True)
class Domain:
  spec: DomainSpec
  seed: int
  key: int  # the domain's index in its preset: part of every random key
  pid_offset: int  # this domain's pids are pid_offset + 1, ...
  cameras: tuple[Camera, ...]

  @property
  def train_pids(self) -> range:
    return range(self.pid_offset + 1, self.pid_offset + 1 + self.spec.train_ids)

  @property
  def test_pids(self) -> range:
    start = self.pid_offset + 1 + self.spec.train_ids
    return range(start, start + self.spec.test_ids)


def make_domain(spec: DomainSpec, seed: int, key: int, pid_offset: int, cam_offset: int) -> Domain:
  style = STYLES[spec.style]
  cams = tuple(sample_camera(style, seed, key, i, cam_offset + i + 1) for i in range(spec.cameras))
  return Domain(spec, seed, key, pid_offset, cams)


@dataclasses.dataclass(frozen=True)
class Shot:
  split: str  # train | query | gallery
  kind: str  # person | distractor | junk
  pid: int  # as written in the file name: 0 distractor, -1 junk
  person: int  # whose appearance is drawn (a pid, or a distractor's number)
  cam: int  # index into Domain.cameras
  view: str | None  # None: an empty scene
  index: int  # which picture of this person: keys its randomness
  seq: int = 1
  frame: int = 0
  box: int = 1

  def file_name(self, domain: Domain) -> str:
    pid = "-1" if self.pid < 0 else f"{self.pid:04d}"
    return f"{pid}_c{domain.cameras[self.cam].number}s{self.seq}_{self.frame:06d}_{self.box:02d}.jpg"


def random_view(rng: np.random.Generator, cam: Camera) -> str:
  side = rng.choice(3, p=cam.views)
  return ("front", "back", ("left", "right")[rng.integers(2)])[side]


def _sightings(rng, domain: Domain, pid: int, cams, counts, split: str, query_cams=()):
  """Shots of one person: in each camera mostly one viewpoint (people pass a camera
  walking one way), sometimes another. The first shot in a query camera is the query."""
  shots, index = [], 0
  for cam, count in zip(cams, counts):
    main = random_view(rng, domain.cameras[cam])
    for k in range(count):
      view = main if rng.random() < MAIN_VIEW else random_view(rng, domain.cameras[cam])
      kind = "query" if k == 0 and cam in query_cams else split
      shots.append(Shot(kind, "person", pid, pid, int(cam), view, index))
      index += 1
  return shots


def _train_shots(domain: Domain, pid: int) -> list[Shot]:
  spec = domain.spec
  rng = seeding.rng(domain.seed, domain.key, seeding.PLAN, pid)
  n = int(rng.integers(spec.train_images[0], spec.train_images[1] + 1))
  k = min(n, int(rng.integers(2, spec.cameras + 1)))
  cams = np.sort(rng.choice(spec.cameras, size=k, replace=False))
  counts = 1 + np.bincount(rng.integers(0, k, n - k), minlength=k)
  return _sightings(rng, domain, pid, cams, counts, "train")


def _test_shots(domain: Domain, pid: int) -> list[Shot]:
  """Gallery images in every camera the person passes, plus one query in one or two of
  them: every query then has a match under another camera."""
  spec = domain.spec
  rng = seeding.rng(domain.seed, domain.key, seeding.PLAN, pid)
  k = int(rng.integers(2, spec.cameras + 1))
  cams = np.sort(rng.choice(spec.cameras, size=k, replace=False))
  gallery = rng.integers(spec.gallery_per_camera[0], spec.gallery_per_camera[1] + 1, size=k)
  n_query = min(k, int(rng.integers(spec.query_cameras[0], spec.query_cameras[1] + 1)))
  query_cams = set(rng.choice(cams, size=n_query, replace=False).tolist())
  counts = gallery + np.isin(cams, list(query_cams))
  return _sightings(rng, domain, pid, cams, counts, "gallery", query_cams)


def _extra_shots(domain: Domain) -> list[Shot]:
  """Distractors (strangers, or nobody) and junk (bad boxes of test people)."""
  spec, shots = domain.spec, []
  for j in range(spec.distractors):
    rng = seeding.rng(domain.seed, domain.key, seeding.DISTRACTOR, j)
    cam = int(rng.integers(spec.cameras))
    view = None if rng.random() < 0.35 else random_view(rng, domain.cameras[cam])
    shots.append(Shot("gallery", "distractor", 0, j, cam, view, 0))
  test = domain.test_pids
  for j in range(spec.junk):
    rng = seeding.rng(domain.seed, domain.key, seeding.JUNK, j)
    cam = int(rng.integers(spec.cameras))
    person = test[int(rng.integers(len(test)))] if len(test) else 0
    shots.append(Shot("gallery", "junk", -1, person, cam, random_view(rng, domain.cameras[cam]), j))
  return shots


def plan(domain: Domain) -> list[Shot]:
  """All shots of a domain, with unique (sequence, frame, box) so names never collide."""
  shots = [s for pid in domain.train_pids for s in _train_shots(domain, pid)]
  shots += [s for pid in domain.test_pids for s in _test_shots(domain, pid)]
  shots += _extra_shots(domain)
  rng = seeding.rng(domain.seed, domain.key, seeding.PLAN)
  order = rng.permutation(len(shots))  # capture time: unrelated to identity
  boxes = rng.integers(1, 5, size=len(shots))
  return [dataclasses.replace(s, seq=1 + int(t) * 6 // len(shots), frame=25 * int(t) + 1, box=int(b))
          for s, t, b in zip(shots, order, boxes)]


def _truncated(rng: np.random.Generator, framing: Framing) -> Framing:
  """A junk box: the detector caught a part of someone."""
  mode = rng.integers(3)
  if mode == 0:
    return dataclasses.replace(framing, dx=float(rng.choice((-1, 1)) * rng.uniform(0.5, 0.7)))
  if mode == 1:
    return dataclasses.replace(framing, dy=float(rng.choice((-1, 1)) * rng.uniform(0.4, 0.6)))
  return dataclasses.replace(framing, scale=float(rng.uniform(1.8, 2.6)), dy=float(rng.uniform(-0.4, 0.4)))


def identity_rng(domain: Domain, shot: Shot) -> np.random.Generator:
  """Strangers get their own stream, apart from the ids and from their shot's plan."""
  if shot.kind == "distractor":
    return seeding.rng(domain.seed, domain.key, seeding.DISTRACTOR, shot.person, 1)
  return seeding.rng(domain.seed, domain.key, seeding.IDENTITY, shot.person)


def draw(domain: Domain, shot: Shot) -> Image.Image:
  """The picture of one shot; a pure function of (domain, shot)."""
  cam = domain.cameras[shot.cam]
  rng = seeding.rng(domain.seed, domain.key, seeding.IMAGE, _KIND_CODE[shot.kind], shot.person, shot.index)
  framing = sample_framing(rng, cam)
  if shot.kind == "junk":
    framing = _truncated(rng, framing)
  ident = None
  if shot.view is not None:
    ident = sample_identity(identity_rng(domain, shot))
  return render(cam, ident, shot.view or "front", framing, rng)
