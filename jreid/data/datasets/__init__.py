"""Dataset name -> parser table.

`get(name, root)` returns a `Split`. Real datasets live in their conventional
sub-folder of `root` (as in FastReID's DATASETS.ROOT). SynthPerson names
(`synth_<preset>` or `synth_<preset>/<domain>`) are generated on first use into
`root/synthperson/` and then read back by the Market-1501 parser, so the
synthetic path is the real path. `synth_<preset>/pool` is the pre-training
pool of a preset that has one (`lreid`, `tiny_multi`), read by `synth_pool`
with its tracklet-noisy labels (LUPerson-NL-like; train records only).
"""
from __future__ import annotations

import pathlib
from typing import Callable, Sequence

from jreid.data.datasets import (cuhk01, cuhk02, cuhk03np, cuhksysu, dukemtmcreid, grid, ilids,
                                 luperson, market1501, msmt17, personx, prid, sensereid, synth_pool,
                                 vehicleid, veri, veriwild, viper)
from jreid.data.records import Split, combine
from jreid.errors import ConfigError

# name -> (sub-folder under root, parser(folder, domain) -> Split). Each module's
# docstring gives the layout inside the folder, the protocol and the real counts.
# MSMT17's folder is the root itself: it holds MSMT17_V1/ or MSMT17_V2/.
DATASETS: dict[str, tuple[str, Callable[..., Split]]] = {
    # Person ReID, supervised benchmarks.
    "market1501": ("Market-1501-v15.09.15", market1501.load),
    "dukemtmc": ("DukeMTMC-reID", dukemtmcreid.load),
    "msmt17": (".", msmt17.load),
    "msmt17_trainval": (".", msmt17.load_trainval),
    "cuhk03_labeled": ("cuhk03-np", cuhk03np.load_labeled),
    "cuhk03_detected": ("cuhk03-np", cuhk03np.load_detected),
    "cuhksysu": ("cuhksysu4reid", cuhksysu.load),
    "personx": ("PersonX", personx.load),
    # Small sets (the lifelong / DG "unseen" domains); split 0 of their random splits.
    "viper": ("viper", viper.load),
    "grid": ("underground_reid", grid.load),
    "prid": ("prid_2011", prid.load),
    "cuhk01": ("cuhk01", cuhk01.load),
    "cuhk02": ("cuhk02", cuhk02.load),
    "sensereid": ("SenseReID", sensereid.load),
    "ilids": ("ilids", ilids.load),
    # Unlabeled pre-training images.
    "luperson": ("LUPerson", luperson.load),
    # Vehicle ReID.
    "veri": ("VeRi", veri.load),
    "vehicleid_small": ("VehicleID_V1.0", vehicleid.load_small),
    "vehicleid_medium": ("VehicleID_V1.0", vehicleid.load_medium),
    "vehicleid_large": ("VehicleID_V1.0", vehicleid.load_large),
    "veriwild_small": ("VERI-Wild", veriwild.load_small),
    "veriwild_medium": ("VERI-Wild", veriwild.load_medium),
    "veriwild_large": ("VERI-Wild", veriwild.load_large),
}

POOL = "pool"  # synth_<preset>/pool: the preset's pre-training pool, not a labelled domain


def _synth(name: str, root: pathlib.Path, domain: int) -> Split:
  from jreid.data import synth  # Imported lazily: only synthetic runs need the generator.
  preset, _, domain_name = name[len("synth_"):].partition("/")
  if preset not in synth.PRESETS:
    raise ConfigError(f"unknown SynthPerson preset {preset!r} in dataset name {name!r}; "
                      f"known presets: {sorted(synth.PRESETS)}")
  if domain_name == POOL:
    if synth.PRESETS[preset].pool is None:
      with_pool = sorted(p.name for p in synth.PRESETS.values() if p.pool)
      raise ConfigError(f"SynthPerson preset {preset!r} has no pre-training pool ({name!r}); "
                        f"presets with one: {with_pool}")
    return synth_pool.load(synth.ensure(preset, root) / POOL, domain=domain)
  names = synth.domain_names(preset)
  domain_name = domain_name or names[0]
  if domain_name not in names:
    raise ConfigError(f"SynthPerson preset {preset!r} has domains {names}, not {domain_name!r}"
                      + (f" (or {POOL!r})" if synth.PRESETS[preset].pool else ""))
  generated = synth.ensure(preset, root)
  return market1501.load(generated / domain_name, domain=domain)


def get(name: str, root: str | pathlib.Path, *, domain: int = 0) -> Split:
  root = pathlib.Path(root).expanduser()
  if name.startswith("synth_"):
    return _synth(name, root, domain)
  if name not in DATASETS:
    raise ConfigError(f"unknown dataset {name!r}; known: {sorted(DATASETS)} "
                      "and synth_<preset>[/<domain>|/pool]")
  folder, parse = DATASETS[name]
  return parse(root / folder, domain=domain)


def get_many(names: Sequence[str], root: str | pathlib.Path) -> Split:
  """Several datasets as one, ids/cameras/domains offset so they never collide."""
  return combine([get(n, root) for n in names])
