"""CUHK03-NP (Li et al., CVPR 2014; new protocol of Zhong et al., CVPR 2017).

    <root>/labeled/{bounding_box_train,query,bounding_box_test}/
    <root>/detected/{bounding_box_train,query,bounding_box_test}/

The new protocol splits the 1,467 identities into 767 for training and 700
for testing, with one image per camera of each test id as query:

    labeled:  train 7,368 images / 767 ids, query 1,400, gallery 5,328 (700 ids)
    detected: train 7,365 images / 767 ids, query 1,400, gallery 5,332 (700 ids)

Names are Market-style, ``PPPP_cC_NN.png`` with C in {1, 2} (the two cameras
of the person's pair). The hand-labelled and the DPM-detected boxes are two
benchmarks, registered as ``cuhk03_labeled`` and ``cuhk03_detected``.
Cameras are stored 0-based. Id rules (`layout.market_style`): camera c0 is
refused; Market's conventions apply in case a copy uses them (-1 dropped, 0
gallery only, below -1 refused); the real set has neither.
"""
from __future__ import annotations

import functools
import pathlib

from jreid.data.datasets import layout
from jreid.data.records import Split
from jreid.errors import ConfigError

EXPECTED_LAYOUT = (
    "expected cuhk03-np/labeled/ and cuhk03-np/detected/, each with bounding_box_train/, "
    "query/, bounding_box_test/ holding images named like 0001_c1_1.png")


def load(root: str | pathlib.Path, *, boxes: str = "labeled", domain: int = 0) -> Split:
  if boxes not in ("labeled", "detected"):
    raise ConfigError(f"boxes must be 'labeled' or 'detected', got {boxes!r}")
  root = pathlib.Path(root).expanduser()
  layout.require_dir(root, EXPECTED_LAYOUT)
  return layout.market_style(root / boxes, EXPECTED_LAYOUT, domain=domain)


load_labeled = functools.partial(load, boxes="labeled")
load_detected = functools.partial(load, boxes="detected")
