"""Where a run reads its datasets from: `config.data.format` picks the reader.

    format="folder"  the dataset's own folder under `data.root` (`jreid.data.datasets`)
    format="tfds"    jreid's tensorflow-datasets build under `data.tfds_dir`
                     (`jreid.data.array_record_source`; `python -m jreid.tools.tfds_build`)

Both give the same records in the same order (a tfds record's `path` is the one
the folder reader gives under `data.root`); only where the image bytes come from
differs, so the pipeline, samplers and resumable iterator state are shared.
"""
from __future__ import annotations

from jreid.data import datasets
from jreid.data.records import Split

FORMATS = ("folder", "tfds")


def get(name: str, data, *, domain: int = 0) -> Split:
  """Dataset `name` as `data` (a run's `config.data`) says to read it."""
  if data.get("format", "folder") == "tfds":
    from jreid.data import array_record_source  # lazily: tensorflow-datasets is the `tfds` extra
    return array_record_source.get(name, data.tfds_dir, data.root, domain=domain)
  return datasets.get(name, data.root, domain=domain)
