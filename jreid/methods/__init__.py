"""`config.method` names a module here; each exposes `build(config, num_classes, make_update)`.

`build` returns a checked `jreid.methods.base.Method`: the contract every
method keeps (init, train_step, features and the optional hooks), written
down once in `jreid.methods.base`.
"""
from __future__ import annotations

import importlib

from jreid.errors import ConfigError
from jreid.methods.base import Method

METHODS = {
    "supervised": "jreid.methods.supervised",
    "distill": "jreid.methods.distill",
    "dasa": "jreid.methods.dasa",
    "upreid": "jreid.methods.upreid",
}


def build(config, num_classes: int, make_update) -> Method:
  if config.method not in METHODS:
    raise ConfigError(f"method={config.method!r}; known: {sorted(METHODS)}")
  method = importlib.import_module(METHODS[config.method]).build(config, num_classes, make_update)
  if not isinstance(method, Method):
    raise ConfigError(f"{METHODS[config.method]}.build returned {type(method).__name__}, not a "
                      "jreid.methods.base.Method (build it with jreid.methods.base.method)")
  return method
