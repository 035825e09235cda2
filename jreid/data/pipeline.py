"""grain input pipelines: identity-balanced training batches and ordered test batches.

Every random choice is a pure function of (seed, position in the stream):
which records fill batch b comes from the epoch's sampler permutation, and each
image's augmentation from `default_rng([seed, global_position])`. So the
stream is identical on any number of hosts/devices and after a resume, and the
grain iterator state saved with a checkpoint is just the next position.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import grain
import numpy as np

from jreid.data import transforms
from jreid.data.records import Record
from jreid.errors import ConfigError


class IdentitySampler:
  """Flat stream position -> record index; each batch is P identities x K images.

  As FastReID's balanced identity sampler: an epoch visits every identity once
  in a random order (the remainder that does not fill a batch is dropped); an
  identity with fewer than K images is sampled with replacement.
  """

  def __init__(self, pids: Sequence[int], batch_size: int, num_instances: int, seed: int):
    if batch_size % num_instances:
      raise ConfigError(f"train.batch_size={batch_size} must be a multiple of "
                        f"data.num_instances={num_instances}")
    pids = np.asarray(pids)
    self.unique_pids = np.unique(pids)
    self.indices_by_pid = [np.flatnonzero(pids == pid) for pid in self.unique_pids]
    self.ids_per_batch = batch_size // num_instances
    self.num_instances = num_instances
    self.batch_size = batch_size
    self.seed = seed
    self.batches_per_epoch = len(self.unique_pids) // self.ids_per_batch
    if self.batches_per_epoch == 0:
      raise ConfigError(f"a batch needs {self.ids_per_batch} identities but the training set "
                        f"has {len(self.unique_pids)}; lower train.batch_size")
    self.epoch_length = self.batches_per_epoch * batch_size

  @functools.lru_cache(maxsize=4)
  def epoch(self, epoch: int) -> np.ndarray:
    rng = np.random.default_rng([self.seed, epoch])
    order = rng.permutation(len(self.unique_pids))[:self.batches_per_epoch * self.ids_per_batch]
    picks = []
    for pid_index in order:
      candidates = self.indices_by_pid[pid_index]
      replace = len(candidates) < self.num_instances
      picks.append(rng.choice(candidates, self.num_instances, replace=replace))
    return np.concatenate(picks)

  def __getitem__(self, position: int) -> int:
    epoch, offset = divmod(position, self.epoch_length)
    return int(self.epoch(epoch)[offset])


@dataclasses.dataclass(frozen=True)
class ImageOptions:
  """What `load_train` / `load_test` do to an image (from `config.data`)."""
  height: int
  width: int
  flip_p: float = 0.5
  padding: int = 10
  erase_p: float = 0.5
  mean: tuple[float, float, float] = transforms.IMAGENET_MEAN
  std: tuple[float, float, float] = transforms.IMAGENET_STD

  @classmethod
  def from_config(cls, data_config) -> "ImageOptions":
    return cls(height=data_config.height, width=data_config.width, flip_p=data_config.flip_p,
               padding=data_config.padding, erase_p=data_config.erase_p,
               mean=tuple(data_config.mean), std=tuple(data_config.std))


def load_train(record: Record, options: ImageOptions, rng: np.random.Generator) -> np.ndarray:
  image = transforms.resize(transforms.decode(record.path), (options.height, options.width))
  image = transforms.random_flip(image, rng, options.flip_p)
  image = transforms.pad_crop(image, rng, options.padding)
  image = transforms.random_erase(image, rng, options.erase_p)
  return transforms.normalize(image, options.mean, options.std)


def load_test(record: Record, options: ImageOptions) -> np.ndarray:
  image = transforms.resize(transforms.decode(record.path), (options.height, options.width))
  return transforms.normalize(image, options.mean, options.std)


class _HostStream:
  """This host's slice of every global batch, as a grain random-access source."""

  def __init__(self, sampler: IdentitySampler, num_steps: int, host: int, num_hosts: int):
    if sampler.batch_size % num_hosts:
      raise ConfigError(f"train.batch_size={sampler.batch_size} must divide over {num_hosts} hosts")
    self.sampler = sampler
    self.local = sampler.batch_size // num_hosts
    self.host = host
    self.length = num_steps * self.local

  def __len__(self) -> int:
    return self.length

  def __getitem__(self, position: int) -> tuple[int, int]:
    batch, offset = divmod(position, self.local)
    global_position = batch * self.sampler.batch_size + self.host * self.local + offset
    return global_position, self.sampler[global_position]


def train_dataset(records: Sequence[Record], *, options: ImageOptions, batch_size: int,
                  num_instances: int, num_steps: int, seed: int, host: int = 0,
                  num_hosts: int = 1, num_threads: int = 2, workers: int = 0) -> grain.IterDataset:
  """Batches of {'image', 'label', 'camid', 'domain'} for steps 0..num_steps-1 (this host's part).

  `records` must carry contiguous training labels (see `records.relabel`).
  """
  sampler = IdentitySampler([r.pid for r in records], batch_size, num_instances, seed)
  stream = _HostStream(sampler, num_steps, host, num_hosts)

  def load(item):
    global_position, index = item
    record = records[index]
    rng = np.random.default_rng([seed, global_position])
    return {"image": load_train(record, options, rng), "label": np.int32(record.pid),
            "camid": np.int32(record.camid), "domain": np.int32(record.domain)}

  dataset = grain.MapDataset.source(stream).map(load).batch(stream.local, drop_remainder=True)
  read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2 * stream.local)
  iterable = dataset.to_iter_dataset(read)
  if workers > 0:
    iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return iterable


def test_batches(records: Sequence[Record], *, options: ImageOptions, batch_size: int,
                 num_threads: int = 2):
  """Ordered batches of {'image', 'valid'}; the last one is zero-padded to `batch_size`."""
  padded = len(records) + (-len(records)) % batch_size

  def load(index):
    if index >= len(records):
      return {"image": np.zeros((options.height, options.width, 3), np.float32),
              "valid": np.bool_(False)}
    return {"image": load_test(records[index], options), "valid": np.bool_(True)}

  dataset = grain.MapDataset.range(padded).map(load).batch(batch_size)
  read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=batch_size)
  return dataset.to_iter_dataset(read)
