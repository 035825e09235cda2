"""PKU VehicleID (Liu et al., CVPR 2016), vehicle ReID from surveillance cameras.

    <root>/image/NNNNNNN.jpg
    <root>/train_test_split/train_list.txt      110,178 images, 13,164 vehicles
    <root>/train_test_split/test_list_800.txt     6,532 images,    800 vehicles (small)
    <root>/train_test_split/test_list_1600.txt   11,395 images,  1,600 vehicles (medium)
    <root>/train_test_split/test_list_2400.txt   17,638 images,  2,400 vehicles (large)

List lines are ``<image name without .jpg> <vehicle id>``. The images carry no
camera labels. Protocol: for each test vehicle one image is drawn as the
gallery and all its other images are queries; the paper repeats the draw 10
times. jreid draws it from a generator seeded with the `split` index (0 by
default), so the same split is the same everywhere. Queries get camera 0 and
gallery images camera 1, so the same-id-same-camera rule never removes the
one true match; training images get camera 0. Registered as
``vehicleid_small``, ``vehicleid_medium`` and ``vehicleid_large``.
A negative vehicle id is refused, naming the list file (there is no junk id).
"""
from __future__ import annotations

import collections
import functools
import pathlib

import numpy as np

from jreid.data.datasets import layout
from jreid.data.records import Record, Split
from jreid.errors import ConfigError

TEST_SIZES = (800, 1600, 2400)
EXPECTED_LAYOUT = (
    "expected VehicleID_V1.0/image/ holding NNNNNNN.jpg and VehicleID_V1.0/train_test_split/ "
    "holding train_list.txt and test_list_800.txt / test_list_1600.txt / test_list_2400.txt "
    "with lines like '0000004 0000001'")


def read_list(root: pathlib.Path, name: str) -> list[tuple[str, int]]:
  list_file = root / "train_test_split" / name
  rows = []
  for image, vid, *_ in layout.read_rows(list_file, EXPECTED_LAYOUT, columns=2):
    where = f"{list_file}: {image}"
    rows.append((str(root / "image" / f"{image}.jpg"),
                 layout.person_id(layout.to_int(vid, where, EXPECTED_LAYOUT), where, EXPECTED_LAYOUT)))
  return rows


def load(root: str | pathlib.Path, *, test_size: int = 800, split: int = 0,
         domain: int = 0) -> Split:
  if test_size not in TEST_SIZES:
    raise ConfigError(f"VehicleID test sizes are {TEST_SIZES}, got {test_size}")
  root = pathlib.Path(root).expanduser()
  layout.require_dir(root / "image", EXPECTED_LAYOUT)
  train = [Record(path, vid, 0, domain) for path, vid in read_list(root, "train_list.txt")]
  by_vehicle = collections.defaultdict(list)
  for path, vid in read_list(root, f"test_list_{test_size}.txt"):
    by_vehicle[vid].append(path)
  query, gallery = [], []
  for vid in sorted(by_vehicle):
    paths = by_vehicle[vid]
    chosen = np.random.default_rng([0x7E1D, split, vid]).integers(len(paths))
    gallery.append(Record(paths[chosen], vid, 1, domain))
    query += [Record(p, vid, 0, domain) for i, p in enumerate(paths) if i != chosen]
  return Split(train, query, gallery)


load_small = functools.partial(load, test_size=800)
load_medium = functools.partial(load, test_size=1600)
load_large = functools.partial(load, test_size=2400)
