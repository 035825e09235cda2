"""Test-time routing: each test image is embedded with the bank of its camera's domain (DASA).

Cameras belong to one domain (a deployment's cameras are its own), so the
camera -> domain map learned while training picks a bank for every image of
a seen domain. A camera is named `<dataset>/<camid>` because camera numbers
repeat across real datasets. Cameras of domains never trained on have no
bank; `POLICIES` decides for them, per camera:

  last     the newest bank (the model as it stands after the last step).
  stats    the bank whose stem BN running statistics are closest (2-Wasserstein
           between diagonal Gaussians) to the statistics of the camera's first
           images passed through that bank's stem: a nearest-domain guess that
           needs no labels. Computed on up to `stats_images` of the camera's images.
  average  every bank, the L2-normalised features averaged: an ensemble of
           the domain experts, at the cost of one forward per bank.

The protocol measures all three on the unseen domains (results.json
"unseen_policies"); `lifelong.unseen_policy` picks the headline.
Banks are files (`save_bank`/`load_bank`, flax msgpack) next to
`routing.json`, the camera -> domain map, so a deployment needs the shared
backbone, the banks and that map, nothing else.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Callable

import jax
import numpy as np
from flax import serialization

from jreid.core import partition
from jreid.core.reporting import write_json_atomic
from jreid.data.records import Record
from jreid.errors import ConfigError, ReIDError
from jreid.evaluation.distance import normalise_rows
from jreid.evaluation.retrieval import extract_features

POLICIES = ("last", "stats", "average")


def camera_key(dataset: str, camid: int) -> str:
  return f"{dataset}/{camid}"


def cameras_of(dataset: str, records) -> set[str]:
  return {camera_key(dataset, r.camid) for r in records}


def save_bank(path: str | pathlib.Path, bank: dict) -> None:
  """Writes atomically: a crash leaves the old file or the new one, never half of one."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  tmp.write_bytes(serialization.msgpack_serialize(jax.device_get(bank)))
  os.replace(tmp, path)


def load_bank(path: str | pathlib.Path) -> dict:
  try:
    return serialization.msgpack_restore(pathlib.Path(path).read_bytes())
  except (OSError, ValueError) as err:
    raise ReIDError(f"cannot read the domain bank {path}: {err}") from None


def save_camera_map(path: str | pathlib.Path, camera_domains: dict[str, int],
                    domain_names: list[str]) -> None:
  write_json_atomic(path, {"domains": domain_names, "cameras": dict(sorted(camera_domains.items()))})


def stats_distance(mean_a, var_a, mean_b, var_b) -> float:
  """Squared 2-Wasserstein distance between two diagonal Gaussians, averaged over channels."""
  return float(np.mean((mean_a - mean_b) ** 2 + (np.sqrt(var_a) - np.sqrt(var_b)) ** 2))


@dataclasses.dataclass
class Router:
  """Embeds records with the right bank laid over the shared model variables in `state`."""
  state: object                    # the current train state (shared part of every bank)
  banks: list[dict]                # per trained domain, in training order
  camera_domains: dict[str, int]   # camera key -> index into `banks`
  features_fn: Callable            # jitted method.features
  extract: Callable                # (features_fn, state, records) -> features
  stats_fn: Callable | None = None  # jitted method.stem_moments, for policy "stats" ...
  stem_statistics: Callable | None = None  # ... and method.stem_statistics
  policy: str = "last"
  stats_images: int = 64
  chosen: dict[str, int] = dataclasses.field(default_factory=dict)  # unseen camera -> bank

  def __post_init__(self):
    if self.policy not in POLICIES:
      raise ConfigError(f"lifelong.unseen_policy={self.policy!r}; choose one of {POLICIES}")
    if self.policy == "stats" and (self.stats_fn is None or self.stem_statistics is None):
      raise ConfigError("routing policy 'stats' needs a method with stem_moments and "
                        "stem_statistics (jreid.methods.base)")

  def state_for(self, index: int):
    bank = self.banks[index]
    return self.state.replace(params=partition.merge(self.state.params, bank["params"]),
                              batch_stats=partition.merge(self.state.batch_stats,
                                                          bank["batch_stats"]))

  def nearest_bank(self, records: list[Record]) -> int:
    """Policy "stats": the bank whose stem statistics fit these images best."""
    sample = records[:self.stats_images]
    distances = []
    for index in range(len(self.banks)):
      state = self.state_for(index)
      moments = self.extract(self.stats_fn, state, sample)  # per image: E[x], E[x^2]
      half = moments.shape[-1] // 2
      mean = moments[:, :half].mean(0)
      var = np.maximum(moments[:, half:].mean(0) - mean ** 2, 0.0)
      stem_mean, stem_var = self.stem_statistics(state)
      distances.append(stats_distance(mean, var, np.asarray(stem_mean), np.asarray(stem_var)))
    return int(np.argmin(distances))

  def bank_for(self, camera: str, records: list[Record]) -> int | None:
    """The bank of a camera; None means "average every bank"."""
    if camera in self.camera_domains:
      return self.camera_domains[camera]
    if self.policy == "last":
      return len(self.banks) - 1
    if self.policy == "average":
      return None
    if camera not in self.chosen:
      self.chosen[camera] = self.nearest_bank(records)
    return self.chosen[camera]

  def embed(self, dataset: str, records: list[Record]) -> np.ndarray:
    """Features of `records` (one dataset) in order, each from its camera's bank.

    Cameras are resolved first and images grouped by bank, so each bank's
    weights are merged and its images extracted in one pass.
    """
    by_camera: dict[str, list[int]] = {}
    for i, record in enumerate(records):
      by_camera.setdefault(camera_key(dataset, record.camid), []).append(i)
    by_bank: dict[int | None, list[int]] = {}
    for camera, indices in by_camera.items():
      bank = self.bank_for(camera, [records[i] for i in indices])
      by_bank.setdefault(bank, []).extend(indices)
    out = None
    for index, indices in by_bank.items():
      subset = [records[i] for i in indices]
      if index is None:
        feats = np.mean([normalise_rows(self.extract(self.features_fn, self.state_for(b), subset))
                         for b in range(len(self.banks))], axis=0)
      else:
        feats = self.extract(self.features_fn, self.state_for(index), subset)
      if out is None:
        out = np.zeros((len(records), feats.shape[-1]), np.float32)
      out[indices] = feats
    return out if out is not None else np.zeros((0, 0), np.float32)


def extractor(*, mesh, options, batch_size: int) -> Callable:
  """`extract(fn, state, records)`: `fn`'s per-image rows for `records`, in order."""
  return lambda fn, state, records: extract_features(fn, state, records, mesh=mesh,
                                                     options=options, batch_size=batch_size)
