"""A dataset is a list of Records; combining datasets offsets ids so they never collide."""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence


@dataclasses.dataclass(frozen=True)
class Record:
  """One image: where it is, who it shows, which camera took it, which domain it came from.

  `stored`, when set, returns the image file's bytes from where a build keeps
  them (a tfds ArrayRecord build, `jreid.data.array_record_source`); `path` then
  only names the image (the path the folder reader would give). It takes no
  part in equality, so a stored record equals the folder reader's.
  """
  path: str
  pid: int
  camid: int
  domain: int = 0
  stored: Callable[[], bytes] | None = dataclasses.field(default=None, compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class Split:
  """The three lists every ReID protocol needs."""
  train: list[Record]
  query: list[Record]
  gallery: list[Record]


def relabel(records: Sequence[Record]) -> list[Record]:
  """Maps training pids to 0..N-1 (sorted order) so they index classifier rows."""
  pids = sorted({r.pid for r in records})
  index = {pid: i for i, pid in enumerate(pids)}
  return [dataclasses.replace(r, pid=index[r.pid]) for r in records]


def combine(splits: Sequence[Split]) -> Split:
  """Concatenates datasets, offsetting pids, camids and domains per dataset.

  Query and gallery of one dataset get the same offsets so matching still works;
  negative pids (junk) and pid 0 distractors keep their meaning only within a
  dataset, so they are offset like any other id.
  """
  train, query, gallery = [], [], []
  pid_off = cam_off = dom_off = 0
  for split in splits:
    parts = (split.train, split.query, split.gallery)
    everything = [r for part in parts for r in part]
    if not everything:
      continue
    for out, part in zip((train, query, gallery), parts):
      out.extend(dataclasses.replace(r, pid=r.pid + pid_off, camid=r.camid + cam_off,
                                     domain=r.domain + dom_off) for r in part)
    pid_off += max(r.pid for r in everything) + 1
    cam_off += max(r.camid for r in everything) + 1
    dom_off += max(r.domain for r in everything) + 1
  return Split(train, query, gallery)
