"""Dataset name -> parser table.

`get(name, root)` returns a `Split`. Real datasets live in their conventional
sub-folder of `root` (as in FastReID's DATASETS.ROOT). SynthPerson names
(`synth_<preset>` or `synth_<preset>/<domain>`) are generated on first use into
`root/synthperson/` and then read back by the Market-1501 parser, so the
synthetic path is the real path.
"""
from __future__ import annotations

import pathlib
from typing import Callable, Sequence

from jreid.data.datasets import market1501
from jreid.data.records import Split, combine
from jreid.errors import ConfigError

# name -> (sub-folder under root, parser(folder, domain) -> Split)
DATASETS: dict[str, tuple[str, Callable[..., Split]]] = {
    "market1501": ("Market-1501-v15.09.15", market1501.load),
}


def _synth(name: str, root: pathlib.Path, domain: int) -> Split:
  from jreid.data import synth  # Imported lazily: only synthetic runs need the generator.
  preset, _, domain_name = name[len("synth_"):].partition("/")
  if preset not in synth.PRESETS:
    raise ConfigError(f"unknown SynthPerson preset {preset!r} in dataset name {name!r}; "
                      f"known presets: {sorted(synth.PRESETS)}")
  names = synth.domain_names(preset)
  domain_name = domain_name or names[0]
  if domain_name not in names:
    raise ConfigError(f"SynthPerson preset {preset!r} has domains {names}, not {domain_name!r}")
  generated = synth.ensure(preset, root)
  return market1501.load(generated / domain_name, domain=domain)


def get(name: str, root: str | pathlib.Path, *, domain: int = 0) -> Split:
  root = pathlib.Path(root).expanduser()
  if name.startswith("synth_"):
    return _synth(name, root, domain)
  if name not in DATASETS:
    raise ConfigError(f"unknown dataset {name!r}; known: {sorted(DATASETS)} "
                      "and synth_<preset>[/<domain>]")
  folder, parse = DATASETS[name]
  return parse(root / folder, domain=domain)


def get_many(names: Sequence[str], root: str | pathlib.Path) -> Split:
  """Several datasets as one, ids/cameras/domains offset so they never collide."""
  return combine([get(n, root) for n in names])
