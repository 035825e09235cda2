"""jreid's tensorflow-datasets builds (ArrayRecord files) read back as Records.

    <tfds_dir>/market1501/1.0.0/                       built by `jreid.tools.tfds_build`
    <tfds_dir>/cuhk03_np/labeled/1.0.0/                (a builder with configs: one folder each)
    <tfds_dir>/synth_person/small_d0/1.0.0/

Each example of a build is one record of jreid's own parser (`jreid.data.tfds_builders`):
the image file's bytes as they were on disk, pid, camid, domain, and the file's
name relative to the folder the parser read. Reading gives the records the folder
reader gives for the same data root, in the same order, with `path` the path it
would give (the name for display, CFS subset lists and caches) and `stored` reading
the bytes from the build. The pipeline decodes those bytes with the same PIL call,
so images, sampling and augmentation are those of a folder run.

Reading needs tensorflow-datasets and array_record, not TensorFlow: the build's
`dataset_info.json` is read by `tfds.builder_from_directory`, its examples by
array_record's `ArrayRecordDataSource` (the random-access source grain reads),
each a tf.train.Example parsed with tfds' bundled proto for the fields jreid
uses. (`tfds.data_source` reads the same examples but decodes every field in
Python, 4-5x slower an image; tests/data/test_tfds.py checks both agree.)
"""
from __future__ import annotations

import dataclasses
import pathlib
import threading
from typing import Sequence

from jreid.data.records import Record, Split
from jreid.errors import ConfigError, DatasetLayoutError

VERSION = "1.0.0"   # the builders' version; bump when a build's records or features change
FORMAT = 1          # jreid's feature layout, written to each build's metadata
FEATURES = ("image", "pid", "camid", "domain", "file_name")
TEST_SPLITS = ("query", "gallery")
SYNTH_BUILDER = "synth_person"
SYNTH_POOL = "pool"


@dataclasses.dataclass(frozen=True)
class Build:
  """Where jreid dataset `name` is built, and how its records are put back together.

  `train` lists the build's splits that make jreid's training list, in order;
  `folder` is the dataset's sub-folder of the data root (`datasets.DATASETS`;
  "" for SynthPerson, whose builder reads the data root itself); `absolute`:
  the folder reader gives absolute paths (the SynthPerson pool's does).
  """
  name: str
  builder: str
  config: str | None
  folder: str
  train: tuple[str, ...] = ("train",)
  absolute: bool = False

  @property
  def full_name(self) -> str:
    return self.builder + (f"/{self.config}" if self.config else "")

  def directory(self, tfds_dir: str | pathlib.Path) -> pathlib.Path:
    return pathlib.Path(tfds_dir).expanduser() / self.full_name / VERSION

  def path(self, root: str | pathlib.Path, file_name: str) -> str:
    base = pathlib.Path(root).expanduser()
    base = base.absolute() if self.absolute else base
    return str(base / self.folder / file_name)


REAL = {b.name: b for b in (
    Build("market1501", "market1501", None, "Market-1501-v15.09.15"),
    Build("dukemtmc", "dukemtmc_reid", None, "DukeMTMC-reID"),
    Build("msmt17", "msmt17", None, "."),
    Build("msmt17_trainval", "msmt17", None, ".", train=("train", "val")),
    Build("cuhk03_labeled", "cuhk03_np", "labeled", "cuhk03-np"),
    Build("cuhk03_detected", "cuhk03_np", "detected", "cuhk03-np"),
)}


def synth_config(preset: str, domain: str) -> str:
  """The synth_person builder config of a preset's domain (or of its pool)."""
  return f"{preset}_{domain}"


def build_of(name: str) -> Build:
  """The build that holds jreid dataset `name`; a ConfigError for a name no builder makes."""
  if name in REAL:
    return REAL[name]
  if name.startswith("synth_"):
    from jreid.data import synth  # Imported lazily, as `datasets` does.
    preset, _, domain = name[len("synth_"):].partition("/")
    if preset in synth.PRESETS:
      domains = synth.domain_names(preset) + ([SYNTH_POOL] if synth.PRESETS[preset].pool else [])
      domain = domain or domains[0]
      if domain in domains:
        return Build(name, SYNTH_BUILDER, synth_config(preset, domain), "",
                     absolute=domain == SYNTH_POOL)
  raise ConfigError(f"dataset {name!r} has no tensorflow-datasets builder in jreid; with "
                    f"config.data.format='tfds' the names are {sorted(REAL)} and "
                    "synth_<preset>[/<domain>|/pool] (or use config.data.format='folder')")


def build_command(build: Build) -> str:
  return (f"python -m jreid.tools.tfds_build --dataset {build.name} "
          f"--manual_dir <its downloaded folder> --data_dir <config.data.tfds_dir>")


def _check_built(build: Build, tfds_dir: str | pathlib.Path) -> pathlib.Path:
  top = pathlib.Path(tfds_dir).expanduser()
  if not top.is_dir():
    raise DatasetLayoutError(f"config.data.tfds_dir={str(tfds_dir)!r}: folder {top} does not "
                             f"exist; build {build.name!r} into it with: {build_command(build)}")
  directory = build.directory(tfds_dir)
  if (directory / "dataset_info.json").is_file():
    return directory
  versions = sorted(p.name for p in directory.parent.glob("*")
                    if (p / "dataset_info.json").is_file())
  if versions:
    raise DatasetLayoutError(f"{directory.parent} holds builds of version {versions}, jreid reads "
                             f"version {VERSION} of {build.full_name!r}: rebuild with "
                             f"{build_command(build)}")
  raise DatasetLayoutError(f"{build.name!r} is not built in {top} (no {directory}/"
                           f"dataset_info.json): build it with {build_command(build)}")


def _check_metadata(build: Build, info, directory: pathlib.Path) -> None:
  """A build in the right folder written by another builder (or jreid version) is refused."""
  metadata = dict(info.metadata or {})
  found = (metadata.get("jreid_build"), metadata.get("jreid_format"), info.name)
  if found != (build.full_name, FORMAT, build.builder):
    raise DatasetLayoutError(
        f"{directory} is not jreid's build of {build.full_name!r} (format {FORMAT}): its "
        f"metadata says build {found[0]!r}, format {found[1]!r}, builder {found[2]!r}; rebuild "
        f"with {build_command(build)}")
  missing = sorted(set(FEATURES) - set(info.features.keys()))
  if missing:
    raise DatasetLayoutError(f"{directory} lacks the features {missing} of jreid's builds")
  if build.builder == SYNTH_BUILDER:
    from jreid.data import synth
    if metadata.get("generator_version") != synth.GENERATOR_VERSION:
      raise DatasetLayoutError(
          f"{directory} was built from SynthPerson generator version "
          f"{metadata.get('generator_version')!r}, this jreid generates version "
          f"{synth.GENERATOR_VERSION}: rebuild with {build_command(build)}")


class SplitImages:
  """Image bytes of one split of a build, by example index.

  array_record's data source over the split's shard files (in order), opened on
  first use in each process (a grain worker receives only the file names), once
  even when threads race.
  """

  def __init__(self, directory: pathlib.Path, split: str, files: Sequence[str]):
    self.directory, self.split, self.files = directory, split, tuple(files)
    self._source = None
    self._lock = threading.Lock()

  def __getstate__(self):
    return {"directory": self.directory, "split": self.split, "files": self.files}

  def __setstate__(self, state):
    self.__init__(state["directory"], state["split"], state["files"])

  def source(self):
    if self._source is None:
      with self._lock:
        if self._source is None:
          from array_record.python.array_record_data_source import ArrayRecordDataSource
          self._source = ArrayRecordDataSource([str(self.directory / f) for f in self.files])
    return self._source

  def __len__(self) -> int:
    return len(self.source())

  def __getitem__(self, index: int) -> bytes:
    return _parse(self.source()[index]).feature["image"].bytes_list.value[0]

  def rows(self, chunk: int = 512):
    """(file name, pid, camid, domain) of every example, in order."""
    source = self.source()
    for start in range(0, len(source), chunk):
      for raw in source.__getitems__(range(start, min(start + chunk, len(source)))):
        f = _parse(raw).feature
        yield (f["file_name"].bytes_list.value[0].decode(), f["pid"].int64_list.value[0],
               f["camid"].int64_list.value[0], f["domain"].int64_list.value[0])


def _parse(raw: bytes):
  """The features of a serialized tf.train.Example, by tfds' own proto (no TensorFlow).

  tfds' numpy data source would decode every feature of the example in Python
  (~250 us an image); the image's bytes alone take a few microseconds.
  """
  from tensorflow_datasets.proto import tf_example_pb2  # the `tfds` extra
  return tf_example_pb2.Example.FromString(raw).features


@dataclasses.dataclass(frozen=True)
class StoredImage:
  """`Record.stored` of a build's example: its image bytes, read when called."""
  images: SplitImages
  index: int

  def __call__(self) -> bytes:
    return self.images[self.index]

  @property
  def fingerprint(self) -> str:
    """Names the bytes for caches keyed by image (`posterior_cache`): build, split and example."""
    return f"{self.images.directory}:{self.images.split}:{self.index}"


def _records(build: Build, images: SplitImages, root, domain: int) -> list[Record]:
  return [Record(build.path(root, name), int(pid), int(camid), int(stored_domain) + domain,
                 stored=StoredImage(images, index))
          for index, (name, pid, camid, stored_domain) in enumerate(images.rows())]


def get(name: str, tfds_dir: str | pathlib.Path, root: str | pathlib.Path, *,
        domain: int = 0) -> Split:
  """Dataset `name` from its build under `tfds_dir`, as `datasets.get(name, root)` gives it."""
  build = build_of(name)
  directory = _check_built(build, tfds_dir)
  import tensorflow_datasets as tfds  # the `tfds` extra
  info = tfds.builder_from_directory(str(directory)).info
  _check_metadata(build, info, directory)
  splits = set(info.splits.keys())
  missing = sorted(set(build.train) - splits)
  if missing:
    raise DatasetLayoutError(f"{directory} has splits {sorted(splits)}, not {missing}: rebuild "
                             f"with {build_command(build)}")

  def read(split):
    if split not in splits:
      return []
    return _records(build, SplitImages(directory, split, info.splits[split].filenames), root,
                    domain)

  train = [r for split in build.train for r in read(split)]
  return Split(train=train, query=read("query"), gallery=read("gallery"))
