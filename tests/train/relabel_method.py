"""A small test method that uses the contract's newer hooks: epoch relabelling and constants.

Every epoch, `on_epoch_start` embeds all training images with the current
state, ranks them by their first feature, cuts the ranking into
`NUM_CLUSTERS` equal groups, rotates the group numbers by the epoch, and
returns those pseudo-labels; the class centroids of the new labels become the
state's `centroids` memory (as DCAC rebuilds its prototypes and cluster
contrast its memory). The features are `flatten(images) @ basis @ w`, where
`basis` is a large frozen constant read from `config.relabel.basis_file` and
`w` the only trained parameter; the loss is the cross-entropy of the
centroid similarities. Registered in tests as `methods.METHODS["relabel"]`.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from jreid.core.state import TrainState
from jreid.methods import base

NUM_CLUSTERS = 4
FEATURES = 8


@flax.struct.dataclass
class RelabelState(TrainState):
  centroids: jax.Array  # (NUM_CLUSTERS, FEATURES), rebuilt at every epoch start


@dataclasses.dataclass(frozen=True)
class Relabel:
  update: Any
  basis_file: str

  def load_constants(self) -> dict:
    return {"basis": np.load(self.basis_file)}

  def init(self, rng, images):
    basis_dim = np.load(self.basis_file, mmap_mode="r").shape[1]
    params = {"w": 0.1 * jax.random.normal(rng, (basis_dim, FEATURES))}
    return RelabelState(step=jnp.zeros((), jnp.int32), params=params, batch_stats={},
                        opt_state=self.update.init(params),
                        centroids=jnp.zeros((NUM_CLUSTERS, FEATURES)))

  def features(self, state, images, constants):
    flat = images.reshape(images.shape[0], -1)
    return flat @ constants["basis"] @ state.params["w"]

  def train_step(self, state, batch, rng, constants):
    del rng

    def loss(params):
      feats = self.features(state.replace(params=params), batch["image"], constants)
      logits = feats @ state.centroids.T
      log_p = jax.nn.log_softmax(logits, axis=-1)
      total = -jnp.mean(jnp.take_along_axis(log_p, batch["label"][:, None], axis=-1))
      return total, ({}, {})

    (total, (_, parts)), grads = self.update.value_and_grad(loss, state.params)
    return self.update.apply(state, grads, state.batch_stats, {"loss": total, **parts})

  def on_epoch_start(self, state, epoch, context):
    feats = context.extract(state, context.records)
    order = np.argsort(feats[:, 0], kind="stable")
    groups = np.empty(len(order), np.int64)
    groups[order] = np.arange(len(order)) * NUM_CLUSTERS // len(order)
    labels = (groups + epoch) % NUM_CLUSTERS
    records = [dataclasses.replace(r, pid=int(label)) for r, label in zip(context.records, labels)]
    centroids = np.stack([feats[labels == k].mean(0) for k in range(NUM_CLUSTERS)])
    return state.replace(centroids=jnp.asarray(centroids, jnp.float32)), records


def build(config, num_classes: int, make_update) -> base.Method:
  del num_classes  # pseudo-labels
  impl = Relabel(update=make_update(), basis_file=str(config.relabel.basis_file))
  return base.method(config.method, init=impl.init, train_step=impl.train_step,
                     features=impl.features, on_epoch_start=impl.on_epoch_start,
                     load_constants=impl.load_constants, impl=impl)
