"""VERI-Wild (Lou et al., CVPR 2019), vehicle ReID in the wild.

    <root>/images/<vid>/<image>.jpg
    <root>/train_test_split/train_list.txt         277,797 images, 30,671 vehicles
    <root>/train_test_split/test_3000_query.txt      3,000 queries (small)
    <root>/train_test_split/test_3000.txt           41,861 images, 3,000 vehicles
    <root>/train_test_split/test_5000_query.txt, test_5000.txt     (medium: 5,000 / 69,389)
    <root>/train_test_split/test_10000_query.txt, test_10000.txt   (large: 10,000 / 138,517)
    <root>/train_test_split/vehicle_info.txt        camera (and time, model, type, colour) per image

416,314 images of 40,671 vehicles from 174 cameras. List lines are
``<vid>/<image>`` (no extension). ``vehicle_info.txt`` lines are
``<vid>/<image>;<camera>;<time>;<model>;<type>;<colour>``, possibly after
one header line. The official query and gallery lists are used as given; the
gallery list may contain the query images themselves, which the standard
same-id-same-camera rule removes from each query's ranking. Raw camera numbers
are mapped to 0..K-1 in sorted order over vehicle_info.txt, so cameras are
0-based whatever the first raw number is (no camera number is special).
Registered as ``veriwild_small``, ``veriwild_medium`` and ``veriwild_large``.
A negative vehicle id is refused, naming the list file (there is no junk id).
"""
from __future__ import annotations

import functools
import pathlib

from jreid.data.datasets import layout
from jreid.data.records import Record, Split
from jreid.errors import ConfigError, DatasetLayoutError

TEST_SIZES = (3000, 5000, 10000)
EXPECTED_LAYOUT = (
    "expected VERI-Wild/images/<vid>/<image>.jpg and VERI-Wild/train_test_split/ holding "
    "train_list.txt, test_3000_query.txt, test_3000.txt (and 5000/10000), and "
    "vehicle_info.txt with lines like '00001/000001;012;2018-03-13 02:00:32;...'")


def cameras(info_file: pathlib.Path) -> dict[str, int]:
  """image key (``vid/image``) -> 0-based camera."""
  raw = {}
  rows = layout.read_rows(info_file, EXPECTED_LAYOUT, columns=2, sep=";")
  for number, (key, camera, *_) in enumerate(rows):
    if not camera.isdigit():
      if number == 0:
        continue  # a header line
      raise DatasetLayoutError(f"{info_file}: camera {camera!r} of {key} is not a number: "
                               f"{EXPECTED_LAYOUT}")
    raw[key] = int(camera)
  dense = layout.dense(raw.values())
  return {key: dense[camera] for key, camera in raw.items()}


def read_list(root: pathlib.Path, name: str, camera_of: dict[str, int],
              domain: int) -> list[Record]:
  list_file = root / "train_test_split" / name
  records = []
  for key, *_ in layout.read_rows(list_file, EXPECTED_LAYOUT, columns=1):
    vid, sep, _ = key.partition("/")
    if not sep:
      raise DatasetLayoutError(f"{list_file}: {key!r} is not <vid>/<image>: {EXPECTED_LAYOUT}")
    if key not in camera_of:
      raise DatasetLayoutError(f"{list_file}: {key} has no camera in vehicle_info.txt: "
                               f"{EXPECTED_LAYOUT}")
    where = f"{list_file}: {key}"
    vid = layout.person_id(layout.to_int(vid, where, EXPECTED_LAYOUT), where, EXPECTED_LAYOUT)
    records.append(Record(str(root / "images" / f"{key}.jpg"), vid, camera_of[key], domain))
  return records


def load(root: str | pathlib.Path, *, test_size: int = 3000, domain: int = 0) -> Split:
  if test_size not in TEST_SIZES:
    raise ConfigError(f"VERI-Wild test sizes are {TEST_SIZES}, got {test_size}")
  root = pathlib.Path(root).expanduser()
  layout.require_dir(root / "images", EXPECTED_LAYOUT)
  camera_of = cameras(root / "train_test_split" / "vehicle_info.txt")
  return Split(
      train=read_list(root, "train_list.txt", camera_of, domain),
      query=read_list(root, f"test_{test_size}_query.txt", camera_of, domain),
      gallery=read_list(root, f"test_{test_size}.txt", camera_of, domain))


load_small = functools.partial(load, test_size=3000)
load_medium = functools.partial(load, test_size=5000)
load_large = functools.partial(load, test_size=10000)
