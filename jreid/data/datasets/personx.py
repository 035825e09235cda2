"""PersonX (Sun and Zheng, CVPR 2019), the synthetic Unity-rendered set, in its ReID release.

    <root>/bounding_box_train/  410 ids
    <root>/query/               856 ids (the test ids)
    <root>/bounding_box_test/   856 ids

1,266 identities in all (547 female, 719 male), six camera views per scene.
The ReID release uses Market-style names (``PPPP_cC...jpg``), and only that
prefix is parsed because the remaining fields differ between the PersonX
versions. Image counts depend on the background subset exported, so they are
not checked here. Cameras are stored 0-based, c0 is refused; junk/distractor
ids follow the Market convention in case a copy has them: -1 dropped, 0 kept
in the gallery and refused in train/query, ids below -1 refused
(`layout.market_style`).
"""
from __future__ import annotations

import pathlib

from jreid.data.datasets import layout
from jreid.data.records import Split

EXPECTED_LAYOUT = (
    "expected PersonX/bounding_box_train/, query/, bounding_box_test/ "
    "holding images named like 0001_c1s1_000001.jpg (Market-style)")


def load(root: str | pathlib.Path, *, domain: int = 0) -> Split:
  return layout.market_style(pathlib.Path(root).expanduser(), EXPECTED_LAYOUT, domain=domain)
