"""Cluster contrast (Dai et al. 2021) as TransReID-SSL fine-tunes without labels (USL / UDA).

At the start of every epoch (the platform's `on_epoch_start`) the whole
training set is embedded with the current model, the k-reciprocal Jaccard
distance of the set with itself is clustered by DBSCAN, outliers are
dropped, and the clusters become the epoch's pseudo-identities: the loop
draws P x K batches of them and saves them in every checkpoint, so a run
killed mid-epoch resumes with the same labels. The memory, one unit centre
per cluster, starts from the normalised cluster means; a step is the
cross-entropy of the batch's normalised features against it (temperature
0.05) and then moves each cluster's entry towards its hardest sample in the
batch (`jreid.losses.cluster_memory`).

The memory has a fixed capacity (`cluster.max_clusters` rows; the state's
shape cannot change between checkpoints) and `num_clusters` says how many
rows the epoch uses. The model is the ReID model without its classifier;
its test feature (`model.test_feature`) is what is clustered, trained and
tested, as the release uses one feature for all three. UDA is the same run
started from a source-supervised workdir (`config.init_from`).

An epoch whose clustering leaves no cluster (every image an outlier, or
fewer clusters than a batch has identities) has nothing to train on: at
the first epoch that is an error naming the settings to change; later, the
previous epoch's pseudo-labels and memory are kept, with a warning.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jreid import config_rules
from jreid.config_rules import Float, Int
from jreid.core import precision
from jreid.core.state import TrainState
from jreid.errors import ClusteringError, ConfigError
from jreid.evaluation.distance import normalise_rows
from jreid.evaluation.rerank import jaccard_distance
from jreid.losses.cluster_memory import cluster_centroids, hardest_update, memory_contrastive_loss
from jreid.methods import base
from jreid.methods.supervised import check_identity_batches
from jreid.models.reid import build_model, model_rules


def cluster_config(**overrides) -> ml_collections.ConfigDict:
  """The `config.cluster` section (the release's settings on Market-1501, METHODS.md)."""
  config = ml_collections.ConfigDict(dict(
      k1=30, k2=6,            # the Jaccard distance's neighbourhoods
      eps=0.6,                # DBSCAN radius: 0.6 Market-1501, 0.7 MSMT17
      min_samples=4,
      temperature=0.05, momentum=0.2,
      max_clusters=4096,      # memory capacity (Market-1501 gives ~600-900 clusters)
  ))
  config.update(overrides)
  return config


CLUSTER_RULES = dict(k1=Int(1), k2=Int(1), eps=Float(0, open_low=True), min_samples=Int(1),
                     temperature=Float(0, open_low=True), momentum=Float(0, 1),
                     max_clusters=Int(1))


@flax.struct.dataclass
class ClusterState(TrainState):
  memory: jax.Array        # (max_clusters, D) unit centres; rows >= num_clusters unused
  num_clusters: jax.Array  # int32 scalar: the current epoch's cluster count


def pseudo_labels(features: np.ndarray, settings) -> np.ndarray:
  """DBSCAN of the Jaccard distance (precomputed): 0..K-1 per image, -1 for outliers."""
  from sklearn.cluster import DBSCAN  # only cluster contrast needs scikit-learn
  distance = jaccard_distance(features, k1=settings.k1, k2=settings.k2)
  return DBSCAN(eps=settings.eps, min_samples=settings.min_samples, metric="precomputed",
                n_jobs=-1).fit_predict(distance)


def purity(labels: np.ndarray, truth: np.ndarray) -> float:
  """Share of clustered images whose cluster's majority identity is theirs (a log, not a loss)."""
  kept = labels >= 0
  if not kept.any():
    return 0.0
  identity = np.unique(truth, return_inverse=True)[1]
  majority = sum(np.bincount(identity[labels == cluster]).max() for cluster in np.unique(labels[kept]))
  return majority / kept.sum()


@dataclasses.dataclass(frozen=True)
class ClusterContrast:
  model: nn.Module  # the ReID model without a classifier
  update: Any       # the loop's shared update step
  settings: Any     # config.cluster
  ids_per_batch: int

  def init(self, rng: jax.Array, images: jax.Array) -> ClusterState:
    variables = self.model.init(rng, images, train=False)
    params, stats = variables["params"], variables.get("batch_stats", {})
    dim = jax.eval_shape(lambda v: self.model.apply(v, images, train=False)[0], variables).shape[-1]
    return ClusterState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=stats,
                        opt_state=self.update.init(params),
                        memory=jnp.zeros((self.settings.max_clusters, dim), jnp.float32),
                        num_clusters=jnp.zeros((), jnp.int32))

  def losses(self, params, batch_stats, memory, num_clusters, batch, rng):
    low = self.update.to_compute
    (feature, _), updates = self.model.apply(
        {"params": low(params), "batch_stats": batch_stats}, low(batch["image"]), train=True,
        mutable=["batch_stats"], rngs={"dropout": rng})
    feature = feature.astype(jnp.float32)
    loss = memory_contrastive_loss(feature, batch["label"], memory, self.settings.temperature,
                                   num_clusters=num_clusters)
    stats = precision.cast_floating(updates["batch_stats"], jnp.float32)
    return loss, (stats, {"loss_memory": loss, "feature": feature})

  def train_step(self, state: ClusterState, batch: dict, rng: jax.Array):
    (total, (stats, parts)), grads = self.update.value_and_grad(
        self.losses, state.params, state.batch_stats, state.memory, state.num_clusters, batch, rng)
    feature = parts.pop("feature")
    stepped, measurements = self.update.apply(state, grads, stats, {"loss": total, **parts})
    memory = hardest_update(state.memory, feature, batch["label"], self.settings.momentum)
    return stepped.replace(memory=memory), measurements

  def features(self, state: ClusterState, images: jax.Array) -> jax.Array:
    low = self.update.to_compute
    feature, _ = self.model.apply({"params": low(state.params), "batch_stats": state.batch_stats},
                                  low(images), train=False)
    return feature.astype(jnp.float32)

  def on_epoch_start(self, state: ClusterState, epoch: int, context):
    s, number = self.settings, epoch + 1  # 1-based, as the loop logs epochs
    features = normalise_rows(context.extract(state, context.records))
    labels = pseudo_labels(features, s)
    count = int(labels.max()) + 1 if (labels >= 0).any() else 0
    outliers = int((labels < 0).sum())
    summary = (f"DBSCAN(eps={s.eps}, min_samples={s.min_samples}) on the Jaccard distance "
               f"(k1={s.k1}, k2={s.k2}) of {len(labels)} images: {count} clusters, "
               f"{outliers} outliers")
    if count > s.max_clusters:
      raise ConfigError(f"epoch {number}: {summary}, more than cluster.max_clusters="
                        f"{s.max_clusters} (the memory's rows): raise it")
    if count < self.ids_per_batch:
      problem = (f"{summary}; a batch needs {self.ids_per_batch} pseudo-identities "
                 f"(train.batch_size / data.num_instances)")
      if epoch == 0 or int(state.num_clusters) == 0:
        finite = features[np.isfinite(features).all(axis=1)]
        raise ClusteringError(
            f"epoch {number}: {problem}. Nothing to train on: raise cluster.eps (distances here "
            f"lie in [0, 1]), lower cluster.min_samples, or start from a better model "
            f"(config.init_from); {len(finite)} of {len(features)} features are finite")
      context.log(f"warning: epoch {number}: {problem}; keeping the previous epoch's "
                  f"{int(state.num_clusters)} pseudo-identities and memory")
      return state, None
    truth = np.array([r.pid for r in context.records])
    context.log(f"epoch {number}: {summary}; purity against data.train's ids "
                f"{100 * purity(labels, truth):.1f}%")
    memory = np.zeros(state.memory.shape, np.float32)
    memory[:count] = cluster_centroids(features, labels)
    records = [dataclasses.replace(r, pid=int(label))
               for r, label in zip(context.records, labels) if label >= 0]
    state = state.replace(memory=jax.device_put(memory, state.memory.sharding),
                          num_clusters=jax.device_put(np.int32(count), state.num_clusters.sharding))
    return state, records


def validate(config) -> None:
  """`config.model` (a ReID model), `config.cluster`, and P x K batches of pseudo-identities."""
  config_rules.check(config, {"model": model_rules(config.get("model")), "cluster": CLUSTER_RULES})
  if config.model.meta != "reid":
    raise ConfigError(f"method 'cluster_contrast' trains model.meta='reid', got {config.model.meta!r}")
  check_identity_batches(config)


def build(config, num_classes: int, make_update) -> base.Method:
  del num_classes  # pseudo-labels, from the clustering
  validate(config)
  impl = ClusterContrast(model=build_model(config.model, 0, classifier=False), update=make_update(),
                         settings=config.cluster,
                         ids_per_batch=config.train.batch_size // config.data.num_instances)
  return base.method(config.method, init=impl.init, train_step=impl.train_step,
                     features=impl.features, on_epoch_start=impl.on_epoch_start, impl=impl)
