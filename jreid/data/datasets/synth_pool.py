"""SynthPerson's pre-training pool with tracklet-noisy labels (the LUPerson-NL analogue).

    <folder>/images/pKK/cN_GGGGGG_FF.jpg   pool domain KK, camera N, tracklet G, frame F
    <folder>/tracklets.txt                 lines `images/pKK/cN_GGGGGG_FF.jpg LABEL`
    <folder>/identities.txt                the true person of each image (never read here)

Written by `jreid.data.synth` for presets with a pool (`lreid`: 3,698 images,
809 labels, 400 people in 12 randomly styled domains). As in LUPerson-NL
(Fu et al., CVPR 2022) the label is what a tracker gives: one per tracklet,
so a person filmed twice has two labels, and ID switches hand some frames
another tracklet's label. Training uses these labels as they are; the true
identities exist only to measure that noise.
pid = the noisy label, camid = N - 1 (0-based, as every parser stores
cameras), domain = KK + `domain`. Records keep the order of tracklets.txt.
There is no test split: query and gallery are empty. The path pattern refuses
camera c0 and the label pattern a negative label (there is no junk id).
"""
from __future__ import annotations

import pathlib
import re

from jreid.data.datasets import layout
from jreid.data.records import Record, Split
from jreid.errors import DatasetLayoutError

LIST_FILE = "tracklets.txt"
PATH_PATTERN = re.compile(r"^images/p([0-9]+)/c([1-9][0-9]*)_[0-9]+_[0-9]+\.jpg$")
LABEL_PATTERN = re.compile(r"^[0-9]+$")
EXPECTED_LAYOUT = (
    "expected pool/tracklets.txt with lines 'images/pKK/cN_GGGGGG_FF.jpg LABEL' "
    "(LABEL a non-negative integer) and those images under pool/")


def _record(folder: pathlib.Path, fields: list[str], where: str, domain: int) -> Record:
  if len(fields) != 2:
    raise DatasetLayoutError(f"{where}: expected 2 fields, got {len(fields)}: {EXPECTED_LAYOUT}")
  name, label = fields
  match = PATH_PATTERN.match(name)
  if match is None:
    raise DatasetLayoutError(f"{where}: unexpected image path {name!r}: {EXPECTED_LAYOUT}")
  if not LABEL_PATTERN.match(label):  # a tracklet number; -1 would read as Market's junk
    raise DatasetLayoutError(f"{where}: label {label!r} is not a non-negative integer: "
                             f"{EXPECTED_LAYOUT}")
  path = folder / name
  if not path.is_file():
    raise DatasetLayoutError(f"{where}: listed image {path} does not exist: {EXPECTED_LAYOUT}")
  return Record(str(path), int(label), int(match.group(2)) - 1, int(match.group(1)) + domain)


def load(folder: str | pathlib.Path, *, domain: int = 0) -> Split:
  folder = pathlib.Path(folder).expanduser().absolute()
  list_file = layout.require_file(layout.require_dir(folder, EXPECTED_LAYOUT) / LIST_FILE,
                                  EXPECTED_LAYOUT)
  train = [_record(folder, line.split(), f"{list_file}:{number}", domain)
           for number, line in enumerate(list_file.read_text().splitlines(), 1) if line.strip()]
  if not train:
    raise DatasetLayoutError(f"empty list file {list_file}: {EXPECTED_LAYOUT}")
  return Split(train=train, query=[], gallery=[])
