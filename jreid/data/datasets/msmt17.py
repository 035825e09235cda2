"""MSMT17 (Wei et al., CVPR 2018) from its list files.

    <root>/MSMT17_V1/train/<pid>/<name>.jpg       (V2: mask_train_v2/)
    <root>/MSMT17_V1/test/<pid>/<name>.jpg        (V2: mask_test_v2/)
    <root>/MSMT17_V1/list_train.txt  list_val.txt  list_query.txt  list_gallery.txt

126,441 images of 4,101 ids from 15 cameras. Each list line is
``<pid folder>/<name>.jpg <pid>``, relative to train/ (train, val) or test/
(query, gallery):

    list_train.txt  30,248 images, 1,041 ids   } together the 32,621-image
    list_val.txt     2,373 images (same ids)   } training set
    list_query.txt  11,659 images, 3,060 ids
    list_gallery.txt 82,161 images, 3,060 ids

Test pids restart at 0, so train and test ids are separate namespaces (they
never meet: train is relabelled, test is only matched against test). Names are
``PPPP_SSS_CC_DDDDtime_FFFF_N.jpg``; the camera is the third field (01-15),
stored 0-based. The official protocol trains on list_train only; registered
``msmt17_trainval`` merges list_val in (the FastReID default). Whichever of
MSMT17_V2 and MSMT17_V1 exists under the root is used (V2 first, as FastReID
does), also one level down in MSMT17/ or msmt17/ (torchreid's habit); the root
may also be the version folder itself.
Refused, naming the list file and line: camera 00 (cameras are 01-15) and a
negative pid (MSMT17 has no junk or distractor ids; pid 0 is a person).
"""
from __future__ import annotations

import functools
import pathlib

from jreid.data.datasets import layout
from jreid.data.records import Record, Split
from jreid.errors import DatasetLayoutError

VERSIONS = {"MSMT17_V2": ("mask_train_v2", "mask_test_v2"), "MSMT17_V1": ("train", "test")}
EXPECTED_LAYOUT = (
    "expected <root>/MSMT17_V1/ (or MSMT17_V2/) holding train/ and test/ (V2: mask_train_v2/, "
    "mask_test_v2/) and list_train.txt, list_val.txt, list_query.txt, list_gallery.txt with "
    "lines like '0000/0000_000_01_0303morning_0015_0.jpg 0'")


def _version_folder(root: pathlib.Path) -> tuple[pathlib.Path, str, str]:
  for name, (train, test) in VERSIONS.items():
    for folder in (root / name, root / "MSMT17" / name, root / "msmt17" / name, root):
      if folder.name == name and folder.is_dir():
        return folder, train, test
  raise DatasetLayoutError(f"no MSMT17_V1/ or MSMT17_V2/ in {root}: {EXPECTED_LAYOUT}")


def camera(name: str, where: str) -> int:
  fields = pathlib.PurePosixPath(name).name.split("_")
  if len(fields) < 3:
    raise DatasetLayoutError(f"{where}: cannot read the camera from {name!r}: {EXPECTED_LAYOUT}")
  return layout.camera(layout.to_int(fields[2], where, EXPECTED_LAYOUT), where, EXPECTED_LAYOUT,
                       label=fields[2])


def read_list(list_file: pathlib.Path, images: pathlib.Path, domain: int) -> list[Record]:
  layout.require_dir(images, EXPECTED_LAYOUT)
  records = []
  for name, pid, *_ in layout.read_rows(list_file, EXPECTED_LAYOUT, columns=2):
    where = f"{list_file}: {name}"
    pid = layout.person_id(layout.to_int(pid, where, EXPECTED_LAYOUT), where, EXPECTED_LAYOUT)
    records.append(Record(str(images / name), pid, camera(name, where), domain))
  return records


def load(root: str | pathlib.Path, *, with_val: bool = False, domain: int = 0) -> Split:
  folder, train_dir, test_dir = _version_folder(pathlib.Path(root).expanduser())
  train = read_list(folder / "list_train.txt", folder / train_dir, domain)
  if with_val:
    train += read_list(folder / "list_val.txt", folder / train_dir, domain)
  return Split(train=train,
               query=read_list(folder / "list_query.txt", folder / test_dir, domain),
               gallery=read_list(folder / "list_gallery.txt", folder / test_dir, domain))


load_trainval = functools.partial(load, with_val=True)
