"""VIPeR (Gray and Tao, ECCV 2008 / PETS 2007).

    <root>/cam_a/*.bmp   632 images, one per person
    <root>/cam_b/*.bmp   632 images, the same persons in the same sorted order
    (<root>/VIPeR/cam_a, cam_b is accepted too: the archive nests one level)

632 identities, 1,264 images of 128x48, two outdoor cameras. Files are named
``NNN_AA.bmp`` (pair number, viewpoint angle); the pair is found by sorted
position, as the original evaluation code and torchreid do, so renamed
copies still work as long as the two folders sort alike.

Protocol: 20 random splits of the 632 ids into 316 train and 316 test ids.
Train holds both images of each train id; query is cam_a and gallery is
cam_b of the test ids (one image each, single-shot). The split is a fixed
function of its index (see `layout.draw`); split 0 is the default, as in
DASA's Order 2. Cameras: cam_a 0, cam_b 1. Ids are sorted positions and
cameras the folders, so there is no id rule.
"""
from __future__ import annotations

import pathlib

from jreid.data.datasets import layout
from jreid.data.records import Record, Split
from jreid.errors import ConfigError, DatasetLayoutError

NUM_SPLITS = 20
EXPECTED_LAYOUT = (
    "expected viper/cam_a/ and viper/cam_b/ (or viper/VIPeR/cam_a, cam_b) holding the "
    "632 + 632 images, e.g. cam_a/000_45.bmp and cam_b/000_90.bmp")


def load(root: str | pathlib.Path, *, split: int = 0, domain: int = 0) -> Split:
  if not 0 <= split < NUM_SPLITS:
    raise ConfigError(f"VIPeR has splits 0..{NUM_SPLITS - 1}, got {split}")
  root = pathlib.Path(root).expanduser()
  folder = root if (root / "cam_a").is_dir() else root / "VIPeR"
  cam_a = layout.images(folder / "cam_a", EXPECTED_LAYOUT)
  cam_b = layout.images(folder / "cam_b", EXPECTED_LAYOUT)
  if len(cam_a) != len(cam_b):
    raise DatasetLayoutError(f"{len(cam_a)} images in cam_a but {len(cam_b)} in cam_b; pairs "
                             f"are matched by sorted position: {EXPECTED_LAYOUT}")
  if len(cam_a) < 2:
    raise DatasetLayoutError(f"too few VIPeR pairs in {folder}: {EXPECTED_LAYOUT}")
  # Half the pairs train: 316 of the real 632 (smaller copies keep the ratio).
  train_ids = set(layout.draw(list(range(len(cam_a))), len(cam_a) // 2, split, salt=0x5197))
  train, query, gallery = [], [], []
  for pid, (a, b) in enumerate(zip(cam_a, cam_b)):
    if pid in train_ids:
      train += [Record(str(a), pid, 0, domain), Record(str(b), pid, 1, domain)]
    else:
      query.append(Record(str(a), pid, 0, domain))
      gallery.append(Record(str(b), pid, 1, domain))
  return Split(train, query, gallery)
