"""Protocols drive the shared loop: `config.protocol` names one (DESIGN.md, principle 3).

A protocol is a module with one function, `run(config, workdir) -> dict`,
that trains and evaluates through `jreid.train.loop` and returns what it
writes to `workdir/results.json`. `PROTOCOLS` maps each name to its module
and to the config section it reads; a new protocol is a module and a row.
The table, not the presence of a key, decides: a config whose section does
not fit its protocol fails here, before any work, instead of being run as
another protocol.

`run` also checks every value once, before the protocol writes anything
(`validate`: each section's declared rules, `jreid.config_rules`), so a bad
value is one ConfigError naming the key, not a traceback hours in.
"""
from __future__ import annotations

import dataclasses
import importlib
import pathlib

from jreid import config_blocks, config_rules, methods
from jreid.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Protocol:
  module: str         # imported on use: `import jreid.protocols` stays free of jax
  section: str | None  # the config section only this protocol reads (None: none)


PROTOCOLS = {
    "single": Protocol("jreid.protocols.single", None),          # one run of the loop
    "lifelong": Protocol("jreid.protocols.lifelong", "lifelong"),  # DASA's domain sequence
    "dg": Protocol("jreid.protocols.dg", "dg"),                    # DCAC's single-/multi-source DG
}


def check(config) -> str:
  """The protocol `config` selects; a ConfigError when the name or the sections do not fit."""
  if "protocol" not in config:
    raise ConfigError(f"the config has no `protocol` key; set one of {sorted(PROTOCOLS)} "
                      "(jreid.config_blocks.run gives 'single')")
  name = config.protocol
  if name not in PROTOCOLS:
    raise ConfigError(f"unknown protocol {name!r}; known protocols: {sorted(PROTOCOLS)}")
  section = PROTOCOLS[name].section
  if section and section not in config:
    raise ConfigError(f"protocol={name!r} reads config.{section}, which this config lacks "
                      f"(add the section, as the configs/ files with protocol={name!r} do)")
  for other, protocol in PROTOCOLS.items():
    if protocol.section and protocol.section != section and protocol.section in config:
      raise ConfigError(f"config.{protocol.section} is the {other!r} protocol's section, but "
                        f"protocol={name!r}: set protocol={other!r} or remove the section")
  return name


def validate(config, *, recipes: bool = True) -> None:
  """Every field with a declared rule: the shared sections, then those of `config.method`.

  With `recipes`, an `init_from=recipe:<spec>` (or a recipe in one of the
  method's `RECIPE_FIELDS`, `jreid.methods.recipe_fields`) is loaded and validated too,
  as the pre-training run it names would be (a saved run's config.json is
  validated without: its pre-training already happened).
  """
  config_rules.check(config, config_blocks.rules(config))
  methods.validate(config)
  if not recipes:
    return
  for key in ("init_from", *methods.recipe_fields(config)):
    value = config_blocks.get_dotted(config, key)
    if value.startswith(config_blocks.RECIPE):
      try:
        validate(config_blocks.load_config(value[len(config_blocks.RECIPE):]))
      except ConfigError as err:
        raise ConfigError(f"config.{key}={value}: {err}") from None


def check_devices(config) -> None:
  """Starts `jax.distributed` if asked, then checks that the batches split over the devices.

  Here, before the protocol runs, so that a refused run (no cluster, a batch
  the device count does not divide) writes nothing; the loop's own start of
  `jax.distributed` is then a no-op.
  """
  from jreid.core import sharding  # jax: only when a run starts
  sharding.maybe_initialize_distributed(config.distributed)
  sharding.check_divisible({"train.batch_size": config.train.batch_size,
                            "eval.batch_size": config.eval.batch_size})


def run(config, workdir: str | pathlib.Path) -> dict:
  """Runs the protocol `config.protocol` names in `workdir`; returns its results."""
  name = check(config)
  validate(config)
  check_devices(config)
  return importlib.import_module(PROTOCOLS[name].module).run(config, workdir)
