"""`config.method` names a module here; each exposes `build(config, num_classes, tx, schedule)`.

The returned object has `init(rng, images) -> state`, a pure
`train_step(state, batch, rng) -> (state, measurements)` and
`features(state, images) -> embeddings`; the shared loop does the rest.
Methods whose model has a spatial map may add `spatial_features(state, images)
-> (B, locations, C)`, which evaluation uses for DSR matching (`eval.dsr`).
Methods whose state holds weights read from another run (a distillation
teacher) add `load_weights(state) -> state`: `init` runs under jit, where no
file can be read, so the loop calls it on a freshly initialised state (a
resumed state already holds those weights). Methods that must not inherit
some parameters from `config.init_from` name them in `fresh_params`, a path
pattern (DASA: each domain's classifier starts anew even when the previous
domain had as many identities). Methods that train on other batches than
identity-balanced labelled images name their grain pipeline in `train_dataset`,
with `jreid.data.pipeline.train_dataset`'s signature (UP-ReID:
`pipeline.view_dataset`, two augmented views and the original of each image).
"""
from __future__ import annotations

import importlib

from jreid.errors import ConfigError

METHODS = {
    "supervised": "jreid.methods.supervised",
    "distill": "jreid.methods.distill",
    "dasa": "jreid.methods.dasa",
    "upreid": "jreid.methods.upreid",
}


def build(config, num_classes: int, tx, schedule):
  if config.method not in METHODS:
    raise ConfigError(f"method={config.method!r}; known: {sorted(METHODS)}")
  return importlib.import_module(METHODS[config.method]).build(config, num_classes, tx, schedule)
