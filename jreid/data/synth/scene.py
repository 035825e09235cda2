"""What a camera sees behind people: one wide, fixed scene per camera.

A real camera watches one place, so every crop from it shares a background
(the camera bias that makes same-camera impostors look alike). Each camera
gets a strip wider and taller than a crop; an image crops a random window of
it, as a detector box lands anywhere along the walkway.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

STRIP_H, STRIP_W = 168, 320

WALLS = ((228, 222, 206), (210, 212, 214), (236, 236, 230), (196, 214, 226), (226, 206, 190))
FLOORS = ((190, 180, 160), (150, 150, 150), (120, 110, 100), (210, 200, 186), (96, 96, 100))
FACADES = ((150, 80, 62), (130, 128, 124), (186, 170, 140), (96, 92, 88), (168, 150, 120))
PAVING = ((140, 138, 134), (112, 110, 108), (170, 160, 146), (90, 90, 94))
SIGNS = ((200, 40, 40), (40, 90, 180), (230, 180, 40), (40, 140, 80), (120, 50, 140), (240, 240, 240))
GREENS = ((40, 86, 40), (62, 110, 48), (30, 70, 46), (84, 120, 56))


def _pick(rng, options):
  return options[rng.integers(len(options))]


def _jitter(rng, colour, amount=14):
  return tuple(int(np.clip(c + rng.normal(0, amount), 0, 255)) for c in colour)


def _indoor(draw, site, rng, horizon):
  wall, floor = _jitter(rng, _pick(site, WALLS)), _jitter(rng, _pick(site, FLOORS))
  draw.rectangle((0, 0, STRIP_W, horizon), fill=wall)
  draw.rectangle((0, horizon, STRIP_W, STRIP_H), fill=floor)
  x = int(rng.integers(-40, 10))
  while x < STRIP_W:  # shop fronts: a sign band over a window, then a stretch of wall
    w = int(rng.integers(50, 110))
    draw.rectangle((x, horizon - 70, x + w, horizon - 58), fill=_pick(rng, SIGNS))
    draw.rectangle((x + 4, horizon - 56, x + w - 4, horizon), fill=_jitter(rng, (150, 170, 180), 25))
    draw.line((x + w // 2, horizon - 56, x + w // 2, horizon), fill=(80, 80, 80), width=2)
    x += w + int(rng.integers(10, 50))
  for i in range(6):  # floor tiles, denser towards the horizon
    y = horizon + int((STRIP_H - horizon) * (i / 6) ** 1.6)
    draw.line((0, y, STRIP_W, y), fill=tuple(max(0, c - 25) for c in floor))
  for x in range(0, STRIP_W, 28):
    draw.line((x, horizon, x + (x - STRIP_W // 2) // 3, STRIP_H), fill=tuple(max(0, c - 20) for c in floor))
  for x in range(int(rng.integers(0, 60)), STRIP_W, 90):  # ceiling lights
    draw.rectangle((x, 0, x + 30, 6), fill=(250, 250, 240))


def _street(draw, site, rng, horizon):
  facade, paving = _jitter(rng, _pick(site, FACADES)), _jitter(rng, _pick(site, PAVING))
  draw.rectangle((0, 0, STRIP_W, horizon), fill=facade)
  glass = _jitter(rng, (60, 70, 84), 12)
  step_x, step_y = int(rng.integers(26, 40)), int(rng.integers(28, 40))
  for y in range(6, horizon - 30, step_y):
    for x in range(4, STRIP_W, step_x):
      draw.rectangle((x, y, x + step_x * 0.6, y + step_y * 0.6), fill=glass)
  draw.rectangle((0, horizon - 28, STRIP_W, horizon), fill=tuple(max(0, c - 30) for c in facade))
  draw.rectangle((0, horizon, STRIP_W, STRIP_H), fill=paving)
  for x in range(0, STRIP_W, 24):
    draw.line((x, horizon, x, STRIP_H), fill=tuple(max(0, c - 18) for c in paving))
  if rng.random() < 0.6:  # a kerb and the road
    y = horizon + int(rng.integers(50, 70))
    draw.rectangle((0, y, STRIP_W, STRIP_H), fill=(70, 70, 74))
    draw.rectangle((0, y, STRIP_W, y + 3), fill=(190, 190, 186))
  for x in rng.integers(0, STRIP_W, 2):  # lamp posts
    draw.rectangle((int(x), 0, int(x) + 4, horizon + 20), fill=(50, 52, 56))


def _park(draw, site, rng, horizon):
  draw.rectangle((0, 0, STRIP_W, STRIP_H), fill=_jitter(rng, (170, 196, 220), 10))
  grass = _jitter(rng, _pick(site, GREENS), 10)
  draw.rectangle((0, horizon - 10, STRIP_W, STRIP_H), fill=grass)
  for _ in range(9):
    x, r = int(rng.integers(0, STRIP_W)), int(rng.integers(20, 40))
    y = horizon - int(rng.integers(15, 45))
    draw.rectangle((x - 3, y, x + 3, horizon), fill=(80, 60, 40))
    draw.ellipse((x - r, y - r, x + r, y + r // 2), fill=_jitter(rng, _pick(site, GREENS), 12))
  path = _jitter(rng, (186, 170, 140), 16)
  draw.polygon([(0, horizon + 30), (STRIP_W, horizon + 20), (STRIP_W, STRIP_H), (0, STRIP_H)], fill=path)


def _corridor(draw, site, rng, horizon):
  wall = _jitter(rng, _pick(site, WALLS), 10)
  draw.rectangle((0, 0, STRIP_W, horizon), fill=wall)
  draw.rectangle((0, horizon, STRIP_W, STRIP_H), fill=_jitter(rng, _pick(site, FLOORS)))
  door = _jitter(rng, (120, 80, 50), 20)
  for x in range(int(rng.integers(0, 40)), STRIP_W, int(rng.integers(60, 90))):
    draw.rectangle((x, horizon - 80, x + 26, horizon), fill=door)
    draw.rectangle((x + 20, horizon - 40, x + 23, horizon - 36), fill=(220, 200, 120))
  draw.rectangle((0, horizon - 6, STRIP_W, horizon), fill=tuple(max(0, c - 40) for c in wall))
  for x in range(0, STRIP_W, 40):
    draw.rectangle((x, 0, x + 24, 5), fill=(245, 248, 250))


def _plaza(draw, site, rng, horizon):
  draw.rectangle((0, 0, STRIP_W, STRIP_H), fill=_jitter(rng, (190, 200, 210), 12))
  x = 0
  while x < STRIP_W:  # a skyline of distant buildings
    w, h = int(rng.integers(30, 70)), int(rng.integers(30, horizon))
    draw.rectangle((x, horizon - h, x + w, horizon), fill=_jitter(rng, _pick(site, FACADES), 20))
    x += w
  stone = _jitter(rng, _pick(site, PAVING), 12)
  draw.rectangle((0, horizon, STRIP_W, STRIP_H), fill=stone)
  for i in range(8):
    y = horizon + int((STRIP_H - horizon) * (i / 8) ** 1.5)
    draw.line((0, y, STRIP_W, y), fill=tuple(max(0, c - 15) for c in stone))
  for x in rng.integers(0, STRIP_W - 40, 2):  # benches
    draw.rectangle((int(x), horizon + 12, int(x) + 40, horizon + 20), fill=_jitter(rng, (100, 70, 50), 15))


DRAW = {"indoor": _indoor, "street": _street, "park": _park, "corridor": _corridor, "plaza": _plaza}


def draw_scene(kind: str, site: np.random.Generator, rng: np.random.Generator) -> np.ndarray:
  """A (STRIP_H, STRIP_W, 3) float32 scene: flat shapes plus a smooth texture,
  so blur and noise have something to act on.

  ``site`` picks the base colours and is the same for every camera of a domain
  (one campus has one kind of paving); ``rng`` picks this camera's layout.
  """
  img = Image.new("RGB", (STRIP_W, STRIP_H))
  horizon = int(rng.uniform(0.42, 0.62) * STRIP_H)
  DRAW[kind](ImageDraw.Draw(img), site, rng, horizon)
  out = np.asarray(img, np.float32)
  coarse = rng.normal(0, 7, (STRIP_H // 16, STRIP_W // 16, 3)).astype(np.float32)
  smooth = np.asarray(Image.fromarray(np.uint8(np.clip(coarse + 128, 0, 255))).resize(
      (STRIP_W, STRIP_H), Image.BILINEAR), np.float32) - 128
  out = out + smooth
  grey = out.mean(axis=2, keepdims=True)
  return np.clip(grey + 0.35 * (out - grey), 0, 255)
