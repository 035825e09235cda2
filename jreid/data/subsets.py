"""Training subsets: TransReID-SSL's CFS selection of a pre-training pool, and reading a subset list.

The catastrophic forgetting score (CFS) of an unlabelled image is the cosine
similarity between its feature under a source proxy (a model pre-trained on
the pool) and under a target proxy (that model fine-tuned on the labelled
downstream data): images the fine-tuning barely moves are close to the
downstream domain. The paper keeps the highest-scoring half of LUPerson
(2,090,122 of 4,180,243 images), the authors' scripts 60% (2,508,146). The
sort direction is inferred from the paper (highest similarity kept); `order`
exposes it.

A ranked list is a text file, one image a line, best first:
`<path relative to config.data.root>\t<score>`. `config.data.train_subset`
names such a file (or a plain list of paths, one a line) and
`config.data.train_subset_fraction` how much of its head to keep: only those
training images are used, so a DINO run pre-trains on the CFS subset.
"""
from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence

import numpy as np

from jreid.data.records import Record
from jreid.errors import ConfigError, DatasetLayoutError

ORDERS = ("highest", "lowest")


def cfs_scores(source_features: np.ndarray, target_features: np.ndarray) -> np.ndarray:
  """Per-image cosine similarity of two (N, D) feature sets (float64)."""
  source, target = (np.asarray(f, np.float64) for f in (source_features, target_features))
  if source.shape != target.shape or source.ndim != 2:
    raise ConfigError(f"CFS needs two (N, D) feature sets of one shape, got {source.shape} and "
                      f"{target.shape}")
  norms = np.linalg.norm(source, axis=1) * np.linalg.norm(target, axis=1)
  return np.sum(source * target, axis=1) / np.maximum(norms, 1e-12)


def kept_count(total: int, fraction: float) -> int:
  """round(fraction * total), halves up: 50% of LUPerson is 2,090,122, 60% is 2,508,146."""
  if not 0.0 < fraction <= 1.0:
    raise ConfigError(f"a subset fraction is in (0, 1], got {fraction}")
  return min(total, int(math.floor(fraction * total + 0.5)))


def ranking(scores: np.ndarray, order: str = "highest") -> np.ndarray:
  """Indices from best to worst; ties keep the pool order (a stable sort)."""
  if order not in ORDERS:
    raise ConfigError(f"CFS order={order!r}; choose one of {ORDERS}")
  scores = np.asarray(scores, np.float64)
  return np.argsort(-scores if order == "highest" else scores, kind="stable")


def write_ranked_list(path: str | pathlib.Path, records: Sequence[Record], scores: np.ndarray,
                      root: str | pathlib.Path, order: str = "highest") -> pathlib.Path:
  """Every record of the pool, best first, as `<relative path>\\t<score>` lines."""
  if len(records) != len(scores):
    raise ConfigError(f"{len(records)} records but {len(scores)} scores")
  root = pathlib.Path(root).expanduser()
  lines = [f"{relative_to_root(records[i].path, root)}\t{float(scores[i]):.8f}\n"
           for i in ranking(scores, order)]
  path = pathlib.Path(path).expanduser()
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(lines))
  return path


def read_list(path: str | pathlib.Path, fraction: float = 1.0) -> list[str]:
  """The first `fraction` of a ranked list's paths (or of a plain list of paths)."""
  path = pathlib.Path(path).expanduser()
  if not path.is_file():
    raise DatasetLayoutError(f"no subset list at {path}: expected a text file with one image path "
                             "(relative to the dataset root) per line, optionally a tab and a score")
  names = [line.split("\t")[0].strip() for line in path.read_text().splitlines() if line.strip()]
  if not names:
    raise DatasetLayoutError(f"the subset list {path} names no image")
  return names[:kept_count(len(names), fraction)]


def keep_listed(records: Sequence[Record], names: Sequence[str], root: str | pathlib.Path,
                source: str) -> list[Record]:
  """The records whose path (relative to `root`) is listed; every listed path must exist."""
  root = pathlib.Path(root).expanduser()
  by_name = {relative_to_root(r.path, root): r for r in records}
  missing = [name for name in names if name not in by_name]
  if missing:
    raise DatasetLayoutError(f"{source}: {len(missing)} of its {len(names)} images are not in the "
                             f"training set under {root}, e.g. {missing[0]!r} (is it the list of "
                             "another dataset or root?)")
  keep = set(names)
  return [r for r in records if relative_to_root(r.path, root) in keep]


def relative_to_root(path: str, root: pathlib.Path) -> str:
  """`path` relative to `root` in POSIX form (as a subset list names it); as it is if outside."""
  p = pathlib.Path(path)
  try:
    return p.relative_to(root).as_posix()
  except ValueError:
    return p.as_posix()
