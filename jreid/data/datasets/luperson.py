"""LUPerson (Fu et al., CVPR 2021): unlabeled person crops for pre-training.

    <root>/**/*.jpg   every image under the root, at any depth

4,180,243 crops from 46,260 online street-view videos (over 200K persons,
never labelled). The release is an LMDB database; jreid reads a folder of
image files, so export the LMDB values to files first (any sub-folder
structure). Every image is its own class: pid = its index in sorted path
order, which is what instance-discrimination pre-training (MoCo, DINO)
treats as a label.
camid is 0 (no camera information). There is no test split: query and
gallery are empty. Nothing is read from names, so there is no id rule.
"""
from __future__ import annotations

import pathlib

from jreid.data.datasets import layout
from jreid.data.records import Record, Split

EXPECTED_LAYOUT = "expected LUPerson/ holding image files (.jpg/.png) at any depth"


def load(root: str | pathlib.Path, *, domain: int = 0) -> Split:
  paths = layout.images(pathlib.Path(root).expanduser(), EXPECTED_LAYOUT, recursive=True)
  return Split(train=[Record(str(p), i, 0, domain) for i, p in enumerate(paths)],
               query=[], gallery=[])
