"""DukeMTMC-reID (Zheng et al., ICCV 2017; frames from Ristani et al. 2016).

    <root>/bounding_box_train/  16,522 images, 702 ids
    <root>/query/                2,228 images, 702 ids
    <root>/bounding_box_test/   17,661 images, 1,110 ids (702 + 408 distractor ids)

Names are ``PPPP_cC_fFFFFFFF.jpg`` (person, camera 1-8, frame): the same
``PPPP_cC`` prefix as Market-1501 but without the ``sS`` sequence field, so
the shared prefix pattern is used rather than Market's full one. Duke has no
junk images; its 408 distractor ids are ordinary ids that appear only in the
gallery, so they need no special handling. Cameras are stored 0-based.
Id rules (`layout.market_style`): camera c0 is refused (Duke numbers c1-c8);
Market's conventions apply in case a copy uses them: -1 is dropped, 0 is
kept in the gallery only and refused in train/query, ids below -1 are refused.
"""
from __future__ import annotations

import pathlib

from jreid.data.datasets import layout
from jreid.data.records import Split

EXPECTED_LAYOUT = (
    "expected DukeMTMC-reID/bounding_box_train/, query/, bounding_box_test/ "
    "holding images named like 0001_c2_f0046182.jpg")


def load(root: str | pathlib.Path, *, domain: int = 0) -> Split:
  return layout.market_style(pathlib.Path(root).expanduser(), EXPECTED_LAYOUT, domain=domain)
