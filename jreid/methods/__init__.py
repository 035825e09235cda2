"""`config.method` names a module here; each exposes `build(config, num_classes, make_update)`
and `validate(config)`.

`build` returns a checked `jreid.methods.base.Method`: the contract every
method keeps (init, train_step, features and the optional hooks), written
down once in `jreid.methods.base`. `validate` checks the sections the method
reads beyond the shared ones (`model`, `loss`, its own) against their rules
(`jreid.config_rules`), and its cross-field rules, without building anything:
`jreid.protocols.validate` calls it before a run writes a file.
"""
from __future__ import annotations

import importlib

from jreid import config_rules
from jreid.errors import ConfigError
from jreid.methods.base import Method

METHODS = {
    "supervised": "jreid.methods.supervised",
    "distill": "jreid.methods.distill",
    "dasa": "jreid.methods.dasa",
    "upreid": "jreid.methods.upreid",
    "dino": "jreid.methods.dino",
    "cluster_contrast": "jreid.methods.cluster_contrast",
    "dcac": "jreid.methods.dcac",
    "latent_diffusion": "jreid.methods.latent_diffusion",
}


def build(config, num_classes: int, make_update) -> Method:
  if config.method not in METHODS:
    raise ConfigError(f"method={config.method!r}; known: {sorted(METHODS)}")
  method = importlib.import_module(METHODS[config.method]).build(config, num_classes, make_update)
  if not isinstance(method, Method):
    raise ConfigError(f"{METHODS[config.method]}.build returned {type(method).__name__}, not a "
                      "jreid.methods.base.Method (build it with jreid.methods.base.method)")
  return method


def recipe_fields(config) -> tuple[str, ...]:
  """The dotted config keys (besides `init_from`) where `config.method` takes `recipe:<spec>`: a
  run the loop trains once and replaces by its folder (a module's `RECIPE_FIELDS`, default none)."""
  return tuple(getattr(importlib.import_module(METHODS[config.method]), "RECIPE_FIELDS", ()))


def validate(config) -> None:
  """`config.method` is known and its sections fit their rules (a ConfigError names the key)."""
  config_rules.check(config, {"method": config_rules.OneOf(*METHODS)})
  importlib.import_module(METHODS[config.method]).validate(config)
