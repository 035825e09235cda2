"""Keyed randomness: every random draw in SynthPerson comes from its own key.

A generator is built from ``(seed, domain, what, ...)`` rather than taken from
one stream, so an image's bytes do not depend on which images were made before
it. Images can then be rendered in any order, in parallel, or one at a time
for a test, and a preset that grows (more ids) leaves the existing ones alone.
"""
from __future__ import annotations

import numpy as np

# The kind of thing a key stands for; distinct numbers keep the streams apart.
IDENTITY = 1
CAMERA = 2
PLAN = 3
IMAGE = 4
TRACK = 5
DISTRACTOR = 6
JUNK = 7
POOL = 8
LABELS = 9


def rng(seed: int, *key: int) -> np.random.Generator:
  """A generator that depends on the seed and the key only.

  The key's length is appended because numpy's SeedSequence ignores trailing
  zeros: without it, (..., pid, 0) and (..., pid) would be the same stream.
  """
  return np.random.default_rng([int(seed), *(int(k) for k in key), len(key) + 1])
