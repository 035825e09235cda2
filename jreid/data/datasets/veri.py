"""VeRi-776 (Liu et al., ICME 2016 / ECCV 2016), vehicle ReID.

    <root>/image_train/  37,778 images, 576 vehicles
    <root>/image_query/   1,678 images, 200 vehicles
    <root>/image_test/   11,579 images, 200 vehicles (the gallery)

20 cameras. Names are ``VVVV_cCCC_FFFFFFFF_N.jpg`` (vehicle, camera 001-020,
frame, index); the ``VVVV_cC`` prefix is parsed. The official evaluation
removes gallery images of the query's vehicle from the query's camera, which
is exactly the generic same-id-same-camera rule, so nothing else is needed.
Cameras are stored 0-based; c000 is refused (the rule would stop applying to
it). Market's id conventions apply in case a copy uses them (-1 dropped, 0
gallery only, below -1 refused; `layout.market_style`).
"""
from __future__ import annotations

import pathlib

from jreid.data.datasets import layout
from jreid.data.records import Split

EXPECTED_LAYOUT = (
    "expected VeRi/image_train/, VeRi/image_query/, VeRi/image_test/ "
    "holding images named like 0001_c001_00016450_0.jpg")


def load(root: str | pathlib.Path, *, domain: int = 0) -> Split:
  return layout.market_style(pathlib.Path(root).expanduser(), EXPECTED_LAYOUT, domain=domain,
                             subdirs=("image_train", "image_query", "image_test"))
