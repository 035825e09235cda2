"""grain input pipelines: identity-balanced training batches, unlabelled view batches
for contrastive pre-training, and ordered test batches.

Every random choice is a pure function of (seed, position in the stream):
which records fill batch b comes from the epoch's sampler permutation, and each
image's augmentation from `default_rng([seed, global_position])` (random
patch also reads the records at the previous positions, themselves fixed by
the seed). So the
stream is identical on any number of hosts/devices and after a resume, and the
grain iterator state saved with a checkpoint is just the next position.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import grain
import numpy as np

from jreid.data import augment, transforms
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


class ImageSampler:
  """Flat stream position -> record index; each epoch is a fresh permutation of every image.

  Contrastive pre-training reads unlabelled images: there is no identity to
  balance, and a batch must not repeat an image (its views would be false negatives).
  """

  def __init__(self, num_records: int, batch_size: int, seed: int):
    self.batches_per_epoch = num_records // batch_size
    if self.batches_per_epoch == 0:
      raise ConfigError(f"train.batch_size={batch_size} is larger than the training set "
                        f"({num_records} images)")
    self.num_records = num_records
    self.batch_size = batch_size
    self.seed = seed
    self.epoch_length = self.batches_per_epoch * batch_size

  @functools.lru_cache(maxsize=4)
  def epoch(self, epoch: int) -> np.ndarray:
    return np.random.default_rng([self.seed, epoch]).permutation(self.num_records)

  def __getitem__(self, position: int) -> int:
    epoch, offset = divmod(position, self.epoch_length)
    return int(self.epoch(epoch)[offset])


@dataclasses.dataclass(frozen=True)
class ImageOptions:
  """What `load_train` / `load_test` do to an image (from `config.data`).

  The augmentations after `std` are off by default; see `config_blocks.data`
  for what each does and `augment` for the order they run in.
  """
  height: int
  width: int
  flip_p: float = 0.5
  padding: int = 10
  erase_p: float = 0.5
  mean: tuple[float, float, float] = transforms.IMAGENET_MEAN
  std: tuple[float, float, float] = transforms.IMAGENET_STD
  autoaug_p: float = 0.0
  rrc_scale: tuple[float, ...] = ()
  rrc_ratio: tuple[float, float] = (3 / 4, 4 / 3)
  color_jitter_p: float = 0.0
  color_jitter: tuple[float, float, float, float] = (0.15, 0.15, 0.1, 0.1)
  grayscale_p: float = 0.0
  blur_p: float = 0.0
  blur_sigma: tuple[float, float] = (0.1, 2.0)
  blur_kernel: int = 9
  cutout_p: float = 0.0
  cutout_size: int = 64
  random_patch_p: float = 0.0
  random_patch_pool: int = 512

  @classmethod
  def from_config(cls, data_config) -> "ImageOptions":
    d = data_config
    return cls(height=d.height, width=d.width, flip_p=d.flip_p, padding=d.padding,
               erase_p=d.erase_p, mean=tuple(d.mean), std=tuple(d.std),
               autoaug_p=d.autoaug_p, rrc_scale=tuple(d.rrc_scale), rrc_ratio=tuple(d.rrc_ratio),
               color_jitter_p=d.color_jitter_p, color_jitter=tuple(d.color_jitter),
               grayscale_p=d.grayscale_p, blur_p=d.blur_p, blur_sigma=tuple(d.blur_sigma),
               blur_kernel=d.blur_kernel, cutout_p=d.cutout_p, cutout_size=d.cutout_size,
               random_patch_p=d.random_patch_p, random_patch_pool=d.random_patch_pool)


class _Donors:
  """Images of the records before this one in the global stream, decoded only when indexed.

  `random_patch` cuts its occluder from one of them: like FastReID's patch pool
  of recently seen images, but fixed by (seed, position) instead of by which
  worker thread happened to load what.
  """

  def __init__(self, records: Sequence[Record], size: tuple[int, int]):
    self.records = records
    self.size = size

  def __len__(self) -> int:
    return len(self.records)

  def __getitem__(self, index: int) -> np.ndarray:
    return transforms.resize(transforms.decode_record(self.records[index]), self.size)


def load_train(record: Record, options: ImageOptions, rng: np.random.Generator,
               donors: Sequence[Record] = ()) -> np.ndarray:
  """One training image; `donors` are the records random patch may cut occluders from."""
  return augment_train(transforms.decode_record(record), options, rng, donors)


def augment_train(image: np.ndarray, options: ImageOptions, rng: np.random.Generator,
                  donors: Sequence[Record] = ()) -> np.ndarray:
  """`load_train` on an already decoded uint8 image (views of one image decode it once)."""
  o = options
  size = (o.height, o.width)
  image = augment.auto_augment(image, rng, o.autoaug_p)
  if o.rrc_scale:
    image = augment.random_resized_crop(image, rng, size, o.rrc_scale, o.rrc_ratio)
  else:
    image = transforms.resize(image, size)
  image = transforms.random_flip(image, rng, o.flip_p)
  image = transforms.pad_crop(image, rng, o.padding)
  image = augment.color_jitter(image, rng, *o.color_jitter, p=o.color_jitter_p)
  image = augment.random_grayscale(image, rng, o.grayscale_p)
  image = augment.gaussian_blur(image, rng, o.blur_p, o.blur_sigma, o.blur_kernel)
  image = transforms.random_erase(image, rng, o.erase_p)
  image = augment.random_patch(image, rng, o.random_patch_p, _Donors(donors, size))
  image = augment.cutout(image, rng, o.cutout_p, o.cutout_size)
  return transforms.normalize(image, o.mean, o.std)


def load_test(record: Record, options: ImageOptions) -> np.ndarray:
  return prepare_test(transforms.decode_record(record), options)


def prepare_test(image: np.ndarray, options: ImageOptions) -> np.ndarray:
  """`load_test` on an already decoded uint8 image."""
  image = transforms.resize(image, (options.height, options.width))
  return transforms.normalize(image, options.mean, options.std)


class HostStream:
  """This host's slice of every global batch, as a grain random-access source."""

  def __init__(self, sampler: IdentitySampler | ImageSampler, num_steps: int, host: int,
               num_hosts: int):
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


class _StreamSlice:
  """records[sampler[q]] for q in [start, stop), looked up only when indexed."""

  def __init__(self, records: Sequence[Record], sampler: IdentitySampler, start: int, stop: int):
    self.records, self.sampler, self.start, self.stop = records, sampler, start, stop

  def __len__(self) -> int:
    return self.stop - self.start

  def __getitem__(self, index: int) -> Record:
    return self.records[self.sampler[self.start + index]]


def train_dataset(records: Sequence[Record], *, options: ImageOptions, batch_size: int,
                  num_instances: int, num_steps: int, seed: int, host: int = 0,
                  num_hosts: int = 1, num_threads: int = 2, workers: int = 0,
                  extras: Callable[[int], dict] | None = None) -> grain.IterDataset:
  """Batches of {'image', 'label', 'camid', 'domain'} for steps 0..num_steps-1 (this host's part).

  `records` must carry contiguous training labels (see `records.relabel`).
  `extras(index)` adds per-image arrays of records[index] that are not
  augmented (DCAC: the cached VAE posterior of the image).
  """
  sampler = IdentitySampler([r.pid for r in records], batch_size, num_instances, seed)
  stream = HostStream(sampler, num_steps, host, num_hosts)

  def earlier(global_position):
    if options.random_patch_p <= 0:
      return ()
    first = max(0, global_position - options.random_patch_pool)
    return _StreamSlice(records, sampler, first, global_position)

  def load(item):
    global_position, index = item
    record = records[index]
    rng = np.random.default_rng([seed, global_position])
    item = {"image": load_train(record, options, rng, earlier(global_position)),
            "label": np.int32(record.pid),
            "camid": np.int32(record.camid), "domain": np.int32(record.domain)}
    return {**item, **extras(index)} if extras else item

  return batches(stream, load, num_threads, workers)


def view_dataset(records: Sequence[Record], *, options: ImageOptions, batch_size: int,
                 num_steps: int, seed: int, host: int = 0, num_hosts: int = 1,
                 num_threads: int = 2, workers: int = 0, **_) -> grain.IterDataset:
  """Batches of {'original', 'query', 'key'} for contrastive pre-training (this host's part).

  `query` and `key` are two independent augmentations of one image (`load_train`
  with seeds (seed, position, 0) and (seed, position, 1)); `original` is the same
  image only resized and normalised (UP-ReID's consistency target). Labels are
  not read. Extra keyword arguments of `train_dataset` (`num_instances`) are ignored,
  so the loop can call either.
  """
  stream = HostStream(ImageSampler(len(records), batch_size, seed), num_steps, host, num_hosts)

  def load(item):
    global_position, index = item
    image = transforms.decode_record(records[index])
    views = {name: augment_train(image, options, np.random.default_rng([seed, global_position, v]))
             for v, name in enumerate(("query", "key"))}
    return {"original": prepare_test(image, options), **views}

  return batches(stream, load, num_threads, workers)


def batches(stream: HostStream, load, num_threads: int, workers: int) -> grain.IterDataset:
  """`load` over the host's stream, batched; grain's state is the next stream position."""
  dataset = grain.MapDataset.source(stream).map(load).batch(stream.local, drop_remainder=True)
  read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2 * stream.local)
  iterable = dataset.to_iter_dataset(read)
  if workers > 0:
    iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return iterable


def test_batches(records: Sequence[Record], *, options: ImageOptions, batch_size: int,
                 num_threads: int = 2, host: int = 0, num_hosts: int = 1):
  """Ordered batches of {'image', 'valid'}; the last one is zero-padded to `batch_size`.

  Each of `num_hosts` hosts reads only its slice of every batch (host h: images
  h*local..(h+1)*local-1 of it, local = batch_size / num_hosts), the part its
  devices embed: no host decodes the whole test set.
  """
  if batch_size % num_hosts:
    raise ConfigError(f"eval.batch_size={batch_size} must divide over {num_hosts} hosts")
  local = batch_size // num_hosts
  padded = len(records) + (-len(records)) % batch_size

  def load(position):
    batch, offset = divmod(position, local)
    index = batch * batch_size + host * local + offset
    if index >= len(records):
      return {"image": np.zeros((options.height, options.width, 3), np.float32),
              "valid": np.bool_(False)}
    return {"image": load_test(records[index], options), "valid": np.bool_(True)}

  dataset = grain.MapDataset.range(padded // num_hosts).map(load).batch(local)
  read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=local)
  return dataset.to_iter_dataset(read)
