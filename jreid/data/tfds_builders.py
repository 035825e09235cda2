"""tensorflow-datasets builders of jreid's datasets, written as ArrayRecord.

    python -m jreid.tools.tfds_build --dataset market1501 \
        --manual_dir /data/Market-1501-v15.09.15 --data_dir ~/tensorflow_datasets

Manual-download builders: `manual_dir` is the folder a user downloaded (the one
`jreid.data.datasets` reads under the data root: Market-1501-v15.09.15/,
DukeMTMC-reID/, the folder holding MSMT17_V1/ or MSMT17_V2/, cuhk03-np/; for
SynthPerson the data root itself, where the set is generated on first use as a
folder run would). Each builder calls jreid's own parser on it, so a build holds
exactly the folder reader's records: the same junk and distractor rules, splits
and order (shuffling is off). An example is the image file's bytes unchanged (no
re-encoding), pid, camid, domain and the file's name relative to `manual_dir`.

Building needs tensorflow-datasets and array_record only: TensorFlow is neither
imported nor required (tests/data/test_tfds.py checks).
"""
from __future__ import annotations

import pathlib
from typing import Callable

import numpy as np
import tensorflow_datasets as tfds

from jreid.data import array_record_source as source
from jreid.data import datasets, synth
from jreid.data.datasets import cuhk03np, dukemtmcreid, market1501, msmt17
from jreid.data.records import Record
from jreid.errors import DatasetLayoutError

FEATURES = tfds.features.FeaturesDict({
    # The file's bytes as on disk; tfds' Image feature keeps given bytes as they are.
    "image": tfds.features.Image(shape=(None, None, 3)),
    "pid": np.int64,
    "camid": np.int64,
    "domain": np.int64,
    "file_name": tfds.features.Text(),  # relative to the manual folder, '/'-separated
})


class _ReidBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """One jreid parser's splits as tfds splits; subclasses say which parser reads the folder."""
  VERSION = tfds.core.Version(source.VERSION)
  RELEASE_NOTES = {source.VERSION: "jreid's parser records: image bytes, pid, camid, domain, file name"}
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Pass the dataset's folder as --manual_dir (jreid.data.tfds_builders)."

  def splits(self, folder: pathlib.Path) -> dict[str, list[Record]]:
    raise NotImplementedError

  def _metadata(self) -> dict:
    return {}

  def _info(self) -> tfds.core.DatasetInfo:
    full_name = self.name + (f"/{self.builder_config.name}" if self.builder_config else "")
    return tfds.core.DatasetInfo(
        builder=self, description=(self.__doc__ or "").strip(), features=FEATURES,
        disable_shuffling=True,  # the parser's order: seeded samplers see the folder run's indices
        metadata=tfds.core.MetadataDict(jreid_build=full_name, jreid_format=source.FORMAT,
                                        **self._metadata()))

  def _split_generators(self, dl_manager):
    # Not `dl_manager.manual_dir`: it raises a bare AssertionError for a missing folder.
    folder = manual_folder(dl_manager._manual_dir, self.name)  # pylint: disable=protected-access
    return {name: self._generate_examples(folder, records)
            for name, records in self.splits(folder).items() if records}

  def _generate_examples(self, folder: pathlib.Path, records: list[Record]):
    for index, record in enumerate(records):
      path = pathlib.Path(record.path)
      yield index, {"image": path.read_bytes(), "pid": record.pid, "camid": record.camid,
                    "domain": record.domain,
                    "file_name": path.relative_to(folder).as_posix()}


def manual_folder(manual_dir, name: str) -> pathlib.Path:
  """The folder the parser reads, absolute (record paths then start with it); refused if missing."""
  if not manual_dir:
    raise DatasetLayoutError(f"building {name!r} needs --manual_dir: the folder you downloaded")
  folder = pathlib.Path(str(manual_dir)).expanduser().absolute()
  if not folder.is_dir():
    raise DatasetLayoutError(f"manual folder {folder} for {name!r} does not exist: pass the "
                             "folder you downloaded as --manual_dir")
  return folder


def _three(load: Callable) -> Callable:
  def splits(self, folder):
    split = load(folder)
    return {"train": split.train, "query": split.query, "gallery": split.gallery}
  return splits


class Market1501(_ReidBuilder):
  """Market-1501 (Zheng et al., ICCV 2015) under jreid's protocol (junk dropped, distractors in
  the gallery); manual_dir: Market-1501-v15.09.15/."""
  name = "market1501"
  splits = _three(market1501.load)


class DukemtmcReid(_ReidBuilder):
  """DukeMTMC-reID (Zheng et al., ICCV 2017); manual_dir: DukeMTMC-reID/."""
  name = "dukemtmc_reid"
  splits = _three(dukemtmcreid.load)


class Msmt17(_ReidBuilder):
  """MSMT17 (Wei et al., CVPR 2018) from its list files; splits train, val, query, gallery;
  manual_dir: the folder holding MSMT17_V1/ or MSMT17_V2/ (or that folder itself)."""
  name = "msmt17"

  def splits(self, folder):
    split = msmt17.load(folder)
    with_val = msmt17.load_trainval(folder).train
    return {"train": split.train, "val": with_val[len(split.train):], "query": split.query,
            "gallery": split.gallery}


class Cuhk03Np(_ReidBuilder):
  """CUHK03-NP (Zhong et al., CVPR 2017): configs labeled and detected; manual_dir: cuhk03-np/."""
  name = "cuhk03_np"
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=boxes, description=f"the {boxes} boxes")
                     for boxes in ("labeled", "detected")]

  def splits(self, folder):
    split = cuhk03np.load(folder, boxes=self.builder_config.name)
    return {"train": split.train, "query": split.query, "gallery": split.gallery}


# config name -> (preset, domain or pool): every domain of every preset, and each pool.
_SYNTH = {source.synth_config(p.name, domain): (p.name, domain) for p in synth.PRESETS.values()
          for domain in [d.name for d in p.domains] + ([source.SYNTH_POOL] if p.pool else [])}


class SynthPerson(_ReidBuilder):
  """SynthPerson (jreid.data.synth): a config per preset domain (`<preset>_<domain>`) and pool
  (`<preset>_pool`, train only); manual_dir: the data root, generated into on first use."""
  name = source.SYNTH_BUILDER
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name, description=f"SynthPerson {p!r}, {d}")
                     for name, (p, d) in _SYNTH.items()]

  def _metadata(self) -> dict:
    return {"generator_version": synth.GENERATOR_VERSION}

  def splits(self, folder):
    preset, domain = _SYNTH[self.builder_config.name]
    split = datasets.get(f"synth_{preset}/{domain}", folder)
    return {"train": split.train, "query": split.query, "gallery": split.gallery}


BUILDERS = {cls.name: cls for cls in (Market1501, DukemtmcReid, Msmt17, Cuhk03Np, SynthPerson)}


def build(name: str, manual_dir, data_dir) -> pathlib.Path:
  """Builds jreid dataset `name` (`array_record_source.build_of`) from `manual_dir` into
  `data_dir`; returns the build's folder. A finished build is kept as it is."""
  target = source.build_of(name)
  manual_folder(manual_dir, name)
  builder = BUILDERS[target.builder](data_dir=str(pathlib.Path(data_dir).expanduser()),
                                     config=target.config, file_format="array_record")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return target.directory(data_dir)
