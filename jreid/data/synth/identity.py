"""Who a SynthPerson identity is: a handful of discrete attributes.

Colours come from short palettes skewed towards the dark, common colours of
real pedestrian data, so many identities share their main colours and a colour
histogram cannot tell them apart. What separates them is layout: the top's
pattern, the bag's kind and side, a hat, hair length, sleeve length, the
bottom's cut and body shape. A model has to look at *where* colours are.
"""
from __future__ import annotations

import dataclasses

import numpy as np

Colour = tuple[int, int, int]

SKIN = ((236, 192, 164), (222, 170, 132), (196, 134, 96), (146, 92, 62), (96, 62, 44))
SKIN_P = (0.25, 0.3, 0.2, 0.15, 0.1)
HAIR = ((22, 18, 16), (58, 40, 28), (104, 72, 44), (196, 160, 98), (150, 148, 144), (140, 58, 30))
HAIR_P = (0.42, 0.24, 0.12, 0.1, 0.07, 0.05)

BLACK, WHITE, GREY = (32, 32, 34), (222, 222, 216), (122, 122, 124)
NAVY, BLUE, RED = (36, 46, 88), (54, 94, 168), (164, 38, 42)
GREEN, YELLOW, PINK = (52, 108, 62), (212, 182, 62), (214, 138, 158)
BROWN, BEIGE = (108, 74, 50), (196, 176, 138)
DENIM_DARK, DENIM = (42, 56, 92), (96, 120, 158)
ORANGE, PURPLE, TEAL, OLIVE = (222, 120, 40), (104, 58, 140), (40, 130, 136), (110, 112, 56)

TOP = (BLACK, WHITE, GREY, NAVY, BLUE, RED, GREEN, YELLOW, PINK, BROWN, BEIGE, ORANGE, PURPLE, TEAL)
TOP_P = (0.14, 0.11, 0.09, 0.08, 0.08, 0.08, 0.07, 0.06, 0.06, 0.05, 0.05, 0.045, 0.045, 0.04)
BOTTOM = (BLACK, DENIM_DARK, DENIM, GREY, BEIGE, WHITE, BROWN, OLIVE, RED)
BOTTOM_P = (0.22, 0.18, 0.13, 0.13, 0.11, 0.07, 0.06, 0.06, 0.04)
SHOES = (BLACK, WHITE, BROWN, GREY)
SHOES_P = (0.45, 0.3, 0.15, 0.1)
BAG = (BLACK, BROWN, GREY, NAVY, RED)
BAG_P = (0.4, 0.25, 0.15, 0.12, 0.08)
HAT = (BLACK, WHITE, RED, NAVY, BEIGE)

PATTERNS = ("plain", "hstripes", "vstripes", "checks", "logo")
PATTERNS_P = (0.44, 0.16, 0.12, 0.12, 0.16)
LOGOS = ("disc", "square", "bar")
BOTTOMS = ("trousers", "shorts", "skirt")
BOTTOMS_P = (0.62, 0.23, 0.15)
BAGS = ("none", "backpack", "shoulder", "handbag")
BAGS_P = (0.4, 0.25, 0.2, 0.15)
HAIRS = ("short", "long", "bald")
HAIRS_P = (0.58, 0.36, 0.06)


@dataclasses.dataclass(frozen=True)
class Identity:
  """One person's fixed appearance; everything that varies per image lives elsewhere."""
  height: float  # relative body height (1 = average)
  width: float  # relative body width
  skin: Colour
  hair: Colour
  hair_style: str  # short | long | bald
  top: Colour
  pattern: str  # plain | hstripes | vstripes | checks | logo
  pattern_colour: Colour  # stripes, checks or the logo
  logo: str  # disc | square | bar (only drawn when pattern == "logo")
  long_sleeves: bool
  bottom: Colour
  bottom_kind: str  # trousers | shorts | skirt
  shoes: Colour
  bag: str  # none | backpack | shoulder | handbag
  bag_side: str  # left | right: the person's own side
  bag_colour: Colour
  hat: Colour | None


def _pick(rng: np.random.Generator, options, probs):
  return options[rng.choice(len(options), p=probs)]


def _dye(rng: np.random.Generator, colour: Colour, amount: float = 22.0) -> Colour:
  """The same named colour in a slightly different shade: no two red shirts are equal."""
  return tuple(int(np.clip(c + rng.normal(0, amount), 0, 255)) for c in colour)


def sample_identity(rng: np.random.Generator) -> Identity:
  """Draws an identity; every attribute is drawn, in a fixed order, from ``rng``."""
  top = _pick(rng, TOP, TOP_P)
  pattern = _pick(rng, PATTERNS, PATTERNS_P)
  # The pattern colour must differ from the top, or the pattern would vanish.
  second = [c for c in TOP if c != top]
  pattern_colour = second[rng.integers(len(second))]
  return Identity(
      height=float(rng.uniform(0.9, 1.08)),
      width=float(rng.uniform(0.85, 1.2)),
      skin=_pick(rng, SKIN, SKIN_P),
      hair=_pick(rng, HAIR, HAIR_P),
      hair_style=_pick(rng, HAIRS, HAIRS_P),
      top=_dye(rng, top),
      pattern=pattern,
      pattern_colour=_dye(rng, pattern_colour),
      logo=_pick(rng, LOGOS, (0.4, 0.3, 0.3)),
      long_sleeves=bool(rng.random() < 0.55),
      bottom=_dye(rng, _pick(rng, BOTTOM, BOTTOM_P)),
      bottom_kind=_pick(rng, BOTTOMS, BOTTOMS_P),
      shoes=_pick(rng, SHOES, SHOES_P),
      bag=_pick(rng, BAGS, BAGS_P),
      bag_side=("left", "right")[rng.integers(2)],
      bag_colour=_dye(rng, _pick(rng, BAG, BAG_P)),
      hat=None if rng.random() < 0.78 else HAT[rng.integers(len(HAT))],
  )
