"""Draws one person as flat shapes, from the front, the back or a side.

The viewpoint decides what a camera can see, as with real pedestrians: a logo
only from the front, a backpack as a block on the back but only as straps from
the front, a shoulder bag in front of the body only when its side faces the
camera, a face from the front but only hair from the back. Drawing happens on a
supersampled RGBA layer so edges come out anti-aliased once it is reduced.
"""
from __future__ import annotations

import dataclasses
import math

from PIL import Image, ImageChops, ImageDraw

from jreid.data.synth.identity import Colour, Identity

VIEWS = ("front", "back", "left", "right")  # left/right: the side view facing that way


@dataclasses.dataclass(frozen=True)
class Pose:
  view: str
  phase: float  # walking cycle in radians
  stride: float  # 0 (standing) .. 1 (full stride)


def _shade(colour: Colour, k: float) -> tuple[int, int, int, int]:
  return tuple(min(255, int(c * k)) for c in colour) + (255,)


def _solid(colour: Colour) -> tuple[int, int, int, int]:
  return tuple(colour) + (255,)


def _limb(draw, a, b, w0, w1, fill):
  """A tapered bar from a to b, rounded at b (a hand, a knee)."""
  dx, dy = b[0] - a[0], b[1] - a[1]
  n = math.hypot(dx, dy) or 1.0
  px, py = -dy / n, dx / n
  draw.polygon([(a[0] + px * w0 / 2, a[1] + py * w0 / 2), (b[0] + px * w1 / 2, b[1] + py * w1 / 2),
                (b[0] - px * w1 / 2, b[1] - py * w1 / 2), (a[0] - px * w0 / 2, a[1] - py * w0 / 2)],
               fill=fill)
  r = w1 / 2
  draw.ellipse((b[0] - r, b[1] - r, b[0] + r, b[1] + r), fill=fill)


def _lerp(a, b, t):
  return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


class _Body:
  """Key points of one figure, in layer pixels."""

  def __init__(self, ident: Identity, pose: Pose, cx: float, top: float, height: float):
    p = height * ident.height
    self.p, self.cx, self.wf = p, cx, ident.width
    self.top = top + height - p  # shorter people stand on the same ground
    t = self.top
    self.head = (cx, t + 0.07 * p)
    self.head_r = (0.052 * p, 0.066 * p)
    self.y_shoulder = t + 0.155 * p
    self.y_waist = t + 0.46 * p
    self.y_crotch = t + 0.53 * p
    self.y_ankle = t + 0.94 * p
    side = pose.view in ("left", "right")
    self.sw = (0.08 if side else 0.135) * p * self.wf
    self.ww = (0.075 if side else 0.115) * p * self.wf
    self.face = 1 if pose.view == "right" else -1  # for side views: +1 faces image-right


def _side_sign(view: str, side: str) -> int:
  """Image x direction (-1/+1) of the person's own left/right side in a front/back view."""
  s = 1 if side == "left" else -1  # a person facing us has their left on our right
  return s if view == "front" else -s


def _torso_polygon(b: _Body, view: str):
  cx, p = b.cx, b.p
  if view in ("front", "back"):
    return [(cx - b.sw, b.y_shoulder + 0.02 * p), (cx - b.sw * 0.8, b.y_shoulder),
            (cx + b.sw * 0.8, b.y_shoulder), (cx + b.sw, b.y_shoulder + 0.02 * p),
            (cx + b.ww, b.y_waist), (cx - b.ww, b.y_waist)]
  f = b.face
  return [(cx - f * b.sw, b.y_shoulder + 0.01 * p), (cx + f * b.sw * 0.9, b.y_shoulder),
          (cx + f * (b.sw + 0.01 * p), b.y_shoulder + 0.12 * p), (cx + f * b.ww, b.y_waist),
          (cx - f * b.ww, b.y_waist)]


def _draw_pattern(layer: Image.Image, ident: Identity, b: _Body, view: str, polygon):
  """Fills the torso's pattern through a mask, so stripes and checks stop at its outline."""
  if ident.pattern == "plain" or (ident.pattern == "logo" and view != "front"):
    return
  draw = ImageDraw.Draw(layer)
  colour = _solid(ident.pattern_colour)
  if ident.pattern == "logo":
    x, y, r = b.cx, b.y_shoulder + 0.1 * b.p, 0.035 * b.p
    if ident.logo == "disc":
      draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    elif ident.logo == "square":
      draw.rectangle((x - r, y - r, x + r, y + r), fill=colour)
    else:
      draw.rectangle((x - 1.8 * r, y - 0.5 * r, x + 1.8 * r, y + 0.5 * r), fill=colour)
    return
  mask = Image.new("L", layer.size, 0)
  ImageDraw.Draw(mask).polygon(polygon, fill=255)
  stripes = Image.new("L", layer.size, 0)
  sdraw = ImageDraw.Draw(stripes)
  period = 0.052 * b.p
  x0, x1 = b.cx - b.sw - 2, b.cx + b.sw + 2
  y0, y1 = b.y_shoulder, b.y_waist
  rows = int((y1 - y0) / period) + 1
  cols = int((x1 - x0) / period) + 1
  for i in range(rows):
    for j in range(cols):
      on = {"hstripes": i % 2 == 0, "vstripes": j % 2 == 0, "checks": (i + j) % 2 == 0}[ident.pattern]
      if on:
        sdraw.rectangle((x0 + j * period, y0 + i * period,
                         x0 + (j + 1) * period - 1, y0 + (i + 1) * period - 1), fill=255)
  layer.paste(colour, (0, 0) + layer.size, ImageChops.multiply(mask, stripes))


def _legs(draw, ident: Identity, b: _Body, pose: Pose):
  p, cx = b.p, b.cx
  bottom = _solid(ident.bottom)
  knee_t = {"trousers": 1.0, "shorts": 0.42, "skirt": 0.0}[ident.bottom_kind]
  swing = math.sin(pose.phase) * pose.stride
  if pose.view in ("front", "back"):
    lift = (max(0.0, swing) * 0.03 * p, max(0.0, -swing) * 0.03 * p)
    legs = [((cx + s * 0.048 * p * b.wf, b.y_waist + 0.03 * p),
             (cx + s * 0.045 * p * b.wf, b.y_ankle - lift[k]), 1.0) for k, s in enumerate((-1, 1))]
  else:
    hip = (cx, b.y_waist + 0.03 * p)
    length = b.y_ankle - hip[1]
    legs = []
    for k, sgn in enumerate((-1, 1)):  # the far leg first, darker
      ang = 0.42 * swing * sgn
      legs.append((hip, (cx + b.face * length * math.sin(ang), hip[1] + length * math.cos(ang)),
                   0.78 if k == 0 else 1.0))
  for hip, ankle, k in legs:
    fill = _shade(ident.bottom if knee_t == 1.0 else ident.skin, k)
    _limb(draw, hip, ankle, 0.085 * p * b.wf, 0.05 * p, fill)
    if 0 < knee_t < 1:
      _limb(draw, hip, _lerp(hip, ankle, knee_t), 0.095 * p * b.wf, 0.075 * p, _shade(ident.bottom, k))
    fx = ankle[0] + (b.face * 0.03 * p if pose.view in ("left", "right") else 0)
    w = 0.05 * p if pose.view in ("left", "right") else 0.035 * p
    draw.ellipse((fx - w, ankle[1] - 0.01 * p, fx + w, ankle[1] + 0.05 * p), fill=_shade(ident.shoes, k))
  # Hips, and the skirt over both legs.
  draw.rectangle((cx - b.ww, b.y_waist - 0.01 * p, cx + b.ww, b.y_crotch), fill=bottom)
  if ident.bottom_kind == "skirt":
    flare = b.ww + 0.05 * p
    draw.polygon([(cx - b.ww, b.y_waist), (cx + b.ww, b.y_waist),
                  (cx + flare, b.y_waist + 0.2 * p), (cx - flare, b.y_waist + 0.2 * p)], fill=bottom)


def _arm(draw, ident: Identity, shoulder, hand, k: float, p: float):
  sleeve = _shade(ident.top, k)
  _limb(draw, shoulder, hand, 0.055 * p, 0.042 * p, _shade(ident.skin, k))
  elbow = _lerp(shoulder, hand, 1.0 if ident.long_sleeves else 0.4)
  _limb(draw, shoulder, elbow, 0.06 * p, 0.05 * p, sleeve)
  if ident.long_sleeves:
    r = 0.022 * p
    draw.ellipse((hand[0] - r, hand[1] - r + 0.01 * p, hand[0] + r, hand[1] + r + 0.01 * p),
                 fill=_shade(ident.skin, k))


def _arms(draw, ident: Identity, b: _Body, pose: Pose, which: str):
  """Both arms (front/back), or the far or near arm of a side view, with their hands' positions."""
  p, cx = b.p, b.cx
  swing = math.sin(pose.phase) * pose.stride
  hands = {}
  if pose.view in ("front", "back"):
    for s in (-1, 1):
      shoulder = (cx + s * (b.sw - 0.025 * p), b.y_shoulder + 0.025 * p)
      hand = (cx + s * (b.sw + 0.012 * p), b.top + (0.5 - 0.02 * s * swing) * p)
      _arm(draw, ident, shoulder, hand, 1.0, p)
      hands[s] = hand
    return hands
  shoulder = (cx, b.y_shoulder + 0.025 * p)
  length = 0.33 * p
  for k, sgn in ((0.78, 1), (1.0, -1)):
    if (which == "far") != (k < 1):
      continue
    ang = 0.5 * swing * sgn
    hand = (cx + b.face * length * math.sin(ang), shoulder[1] + length * math.cos(ang))
    _arm(draw, ident, shoulder, hand, k, p)
    hands[k] = hand
  return hands


def _head(draw, ident: Identity, b: _Body, view: str):
  (hx, hy), (rx, ry) = b.head, b.head_r
  p = b.p
  bbox = (hx - rx, hy - ry, hx + rx, hy + ry)
  skin, hair = _solid(ident.skin), _solid(ident.hair)
  draw.rectangle((hx - 0.02 * p, hy, hx + 0.02 * p, b.y_shoulder + 0.01 * p), fill=skin)
  bald = ident.hair_style == "bald"
  if view == "front":
    draw.ellipse(bbox, fill=skin if bald else hair)
    if not bald:
      draw.ellipse((hx - rx * 0.86, hy - ry * 0.55, hx + rx * 0.86, hy + ry), fill=skin)
    e = 0.008 * p
    for s in (-1, 1):
      ex, ey = hx + s * 0.45 * rx, hy + 0.05 * ry
      draw.ellipse((ex - e, ey - e, ex + e, ey + e), fill=(40, 30, 30, 255))
  elif view == "back":
    draw.ellipse(bbox, fill=skin if bald else hair)
  else:
    draw.ellipse(bbox, fill=skin)
    if not bald:
      start, end = (100, 300) if b.face > 0 else (240, 80)
      draw.chord((hx - rx * 1.05, hy - ry * 1.08, hx + rx * 1.05, hy + ry * 0.95), start, end, fill=hair)
  if ident.hat is not None:
    hat = _solid(ident.hat)
    draw.chord((hx - rx * 1.1, hy - ry * 1.2, hx + rx * 1.1, hy + ry * 0.6), 180, 360, fill=hat)
    if view == "front":
      draw.rectangle((hx - rx * 1.1, hy - ry * 0.35, hx + rx * 1.1, hy - ry * 0.2), fill=hat)
    elif view in ("left", "right"):
      x0 = hx + b.face * rx * 0.3
      draw.rectangle((min(x0, x0 + b.face * rx * 1.3), hy - ry * 0.35,
                      max(x0, x0 + b.face * rx * 1.3), hy - ry * 0.2), fill=hat)


def _long_hair(draw, ident: Identity, b: _Body, view: str):
  (hx, hy), (rx, ry) = b.head, b.head_r
  hair = _solid(ident.hair)
  if view in ("front", "back"):
    box = (hx - rx * 1.05, hy, hx + rx * 1.05, b.y_shoulder + 0.07 * b.p)
  else:
    x0 = hx - b.face * rx * 1.05
    box = (min(x0, hx), hy, max(x0, hx), b.y_shoulder + 0.08 * b.p)
  draw.rounded_rectangle(box, radius=0.3 * rx, fill=hair)


def _bag(draw, ident: Identity, b: _Body, view: str, hands, behind: bool):
  """The bag; ``behind`` says whether this call is the pass before or after the body."""
  p, cx = b.p, b.cx
  colour = _solid(ident.bag_colour)
  kind = ident.bag
  side_view = view in ("left", "right")
  visible_side = ("right" if b.face > 0 else "left") if side_view else None
  if kind == "backpack":
    if side_view and behind:
      x0 = cx - b.face * b.ww
      x1 = x0 - b.face * 0.075 * p
      draw.rounded_rectangle((min(x0, x1), b.y_shoulder + 0.03 * p, max(x0, x1), b.y_shoulder + 0.27 * p),
                             radius=0.02 * p, fill=colour)
    elif view == "back" and not behind:
      w = 0.088 * p * b.wf
      draw.rounded_rectangle((cx - w, b.y_shoulder + 0.025 * p, cx + w, b.y_shoulder + 0.27 * p),
                             radius=0.025 * p, fill=colour)
    elif view == "front" and not behind:
      for s in (-1, 1):
        x = cx + s * b.sw * 0.55
        draw.rectangle((x - 0.016 * p, b.y_shoulder, x + 0.016 * p, b.y_shoulder + 0.15 * p), fill=colour)
    return
  if kind == "none":
    return
  if side_view:
    if (ident.bag_side == visible_side) == behind:
      return
    if kind == "shoulder":
      x = cx - b.face * 0.01 * p
      if not behind:
        draw.line((cx, b.y_shoulder, x, b.y_waist - 0.03 * p), fill=colour, width=max(1, int(0.015 * p)))
      else:
        x = cx - b.face * 0.06 * p
      draw.rectangle((x - 0.05 * p, b.y_waist - 0.03 * p, x + 0.05 * p, b.y_waist + 0.08 * p), fill=colour)
    else:
      hx, hy = hands.get(1.0 if not behind else 0.78, (cx, b.top + 0.5 * p))
      draw.polygon([(hx - 0.04 * p, hy + 0.02 * p), (hx + 0.04 * p, hy + 0.02 * p),
                    (hx + 0.05 * p, hy + 0.12 * p), (hx - 0.05 * p, hy + 0.12 * p)], fill=colour)
    return
  if behind:
    return
  s = _side_sign(view, ident.bag_side)
  if kind == "shoulder":
    x = cx + s * (b.ww + 0.035 * p)
    draw.line((cx - s * b.sw * 0.7, b.y_shoulder + 0.01 * p, x, b.y_waist - 0.03 * p), fill=colour,
              width=max(1, int(0.017 * p)))
    draw.rectangle((x - 0.045 * p, b.y_waist - 0.03 * p, x + 0.045 * p, b.y_waist + 0.08 * p), fill=colour)
  else:
    hx, hy = hands[s]
    draw.polygon([(hx - 0.035 * p, hy + 0.015 * p), (hx + 0.035 * p, hy + 0.015 * p),
                  (hx + 0.05 * p, hy + 0.12 * p), (hx - 0.05 * p, hy + 0.12 * p)], fill=colour)


def draw_person(layer: Image.Image, ident: Identity, pose: Pose, cx: float, top: float, height: float):
  """Draws ``ident`` on an RGBA ``layer``: centred at x=cx, from y=top, ``height`` pixels tall
  for a person of relative height 1 (shorter people are drawn shorter, on the same ground)."""
  b = _Body(ident, pose, cx, top, height)
  draw = ImageDraw.Draw(layer)
  view = pose.view
  side_view = view in ("left", "right")
  if ident.hair_style == "long" and view == "front":
    _long_hair(draw, ident, b, view)
  hands = {}
  if side_view:
    hands.update(_arms(draw, ident, b, pose, "far"))
    _bag(draw, ident, b, view, hands, behind=True)
  _legs(draw, ident, b, pose)
  torso = _torso_polygon(b, view)
  draw.polygon(torso, fill=_solid(ident.top))
  _draw_pattern(layer, ident, b, view, torso)
  if not side_view and ident.bag == "backpack":
    _bag(draw, ident, b, view, hands, behind=False)  # under the arms: on the back, or straps
  hands.update(_arms(draw, ident, b, pose, "near"))
  if ident.hair_style == "long" and view != "front":
    _long_hair(draw, ident, b, view)
  _head(draw, ident, b, view)
  if side_view or ident.bag != "backpack":
    _bag(draw, ident, b, view, hands, behind=False)
