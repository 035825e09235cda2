"""UP-ReID (Yang et al. 2022): MoCo v2 pre-training with intra-identity regularisation.

One step, given two augmented views (query, key) and the original of each image:

  MoCo v2    the online encoder embeds the query view, the EMA encoder (momentum
             0.999, updated before the keys are computed, as MoCo does) the key
             view; InfoNCE against the image queue; the keys are then enqueued.
  CC         the EMA encoder also embeds the originals; the batch's similarity
             rows q_i . k_j (augmented) are pulled towards o_i . o_j (original,
             no gradient) with a multi-kernel Gaussian MMD (`jreid.losses.contrastive`).
  ICC        each view is cut after augmentation into rows x cols patches
             (`jreid.models.patches`), embedded by the same encoders; per patch
             position, InfoNCE against that position's own queue.
  HM         the patch positives are the EMA embedding of the horizontally
             mirrored patch of the same view *and* of the same-position patch of
             the other view, one InfoNCE term each, averaged; without HM only the
             latter.

Shuffle-BN equivalent. MoCo shuffles the key batch across GPUs so that a query
and its key never share batch-norm statistics (otherwise the statistics leak
which sample is the positive). Here every EMA-encoder pass permutes its batch
with the step's random key and normalises in `key_bn_groups` fixed groups
(vmapped BN) before undoing the permutation: the groups are a config value, not
the device count, so 1 and N devices compute the same numbers, and on N devices
the global batch is still split into the same groups. The online encoder
normalises over the global batch (SyncBN), which sees every image once per pass.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jreid import config_rules
from jreid.config_rules import Bool, Float, Int
from jreid.core import ema, precision, queue
from jreid.core.state import TrainState
from jreid.data import pipeline
from jreid.errors import ConfigError
from jreid.losses.contrastive import info_nce, mmd
from jreid.methods import base
from jreid.models import patches
from jreid.models.contrastive import build_encoder, encoder_rules


def upreid_config(**overrides) -> ml_collections.ConfigDict:
  """The `config.upreid` section. Paper-open choices are fields; the comments say why."""
  config = ml_collections.ConfigDict(dict(
      momentum=0.999,          # EMA of the key encoder (MoCo v2, LUPerson)
      temperature=0.07,        # MoCo's tau; LUPerson's MoCo also used 0.1
      queue_size=65536,        # negatives per queue (paper), one image queue + one per patch position
      projection_hidden=2048,  # MoCo v2 MLP 2048-2048-ReLU-128
      projection_dim=128,
      key_bn_groups=8,         # shuffle-BN equivalent: BN groups of the EMA passes (MoCo's 8 GPUs)
      consistency=True,        # CC: MMD between augmented and original similarity rows
      consistency_weight=0.1,  # the paper's printed 0.1
      mmd_kernel_mul=2.0,      # Gaussian kernels at bandwidths base * mul^k ...
      mmd_kernel_num=5,        # ... k = -2..2 around the mean pairwise distance (Long et al.)
      intrinsic=True,          # ICC: patch-level InfoNCE per position
      patch_weight=0.1,        # the paper's printed 0.1, on the mean over patch positions
      patch_rows=4,            # 4 horizontal stripes ...
      patch_cols=2,            # ... x left/right = K 8, the paper's best
      hard_mining=True,        # HM: mirrored patch as an extra positive (off: same position only)
  ))
  config.update(overrides)
  return config


UPREID_RULES = dict(
    momentum=Float(0, 1), temperature=Float(0, open_low=True), queue_size=Int(1),
    projection_hidden=Int(1), projection_dim=Int(1), key_bn_groups=Int(1),
    consistency=Bool(), consistency_weight=Float(0),
    mmd_kernel_mul=Float(0, open_low=True), mmd_kernel_num=Int(1),
    intrinsic=Bool(), patch_weight=Float(0), patch_rows=Int(1), patch_cols=Int(1),
    hard_mining=Bool(),
)


@flax.struct.dataclass
class UPReIDState(TrainState):
  ema_params: Any          # the key encoder: an EMA of `params`, never differentiated
  ema_batch_stats: Any     # its BN statistics, from its own (grouped) passes
  queue: jax.Array         # (queue_size, D) image-level keys
  patch_queues: Any        # (rows * cols, queue_size, D) keys per patch position; () without ICC
  queue_pointer: jax.Array


@dataclasses.dataclass(frozen=True)
class UPReID:
  model: nn.Module
  update: Any  # the loop's shared update step (jreid.train.update.Update)
  settings: Any  # config.upreid

  @property
  def num_patches(self) -> int:
    return self.settings.patch_rows * self.settings.patch_cols

  def init(self, rng: jax.Array, images: jax.Array) -> UPReIDState:
    model_rng, image_rng, patch_rng = jax.random.split(rng, 3)
    variables = self.model.init(model_rng, images, train=False)
    params, stats = variables["params"], variables.get("batch_stats", {})
    size, dim = self.settings.queue_size, self.settings.projection_dim
    patch_queues = (jax.vmap(lambda r: queue.init(r, size, dim))(
        jax.random.split(patch_rng, self.num_patches)) if self.settings.intrinsic
                    else ())  # no leaf: orbax stores no zero-size array
    return UPReIDState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=stats,
                       opt_state=self.update.init(params), ema_params=params, ema_batch_stats=stats,
                       queue=queue.init(image_rng, size, dim), patch_queues=patch_queues,
                       queue_pointer=jnp.zeros((), jnp.int32))

  def after_init_from(self, state: UPReIDState) -> UPReIDState:
    """The key encoder starts as a copy of the loaded online encoder, as at a fresh init."""
    copy = lambda tree: jax.tree.map(jnp.copy, tree)  # own buffers: the state is donated
    return state.replace(ema_params=copy(state.params), ema_batch_stats=copy(state.batch_stats))

  def encode(self, params, batch_stats, images):
    """(projections, BN statistics after this pass), normalising over the whole batch given."""
    low = self.update.to_compute
    (z, _), updates = self.model.apply({"params": low(params), "batch_stats": batch_stats},
                                       low(images), train=True, mutable=["batch_stats"])
    return (z.astype(jnp.float32),
            precision.cast_floating(updates["batch_stats"], jnp.float32))

  def keys(self, params, batch_stats, images, rng):
    """EMA-encoder projections in train-mode BN over shuffled fixed groups (see module doc)."""
    groups, b = self.settings.key_bn_groups, images.shape[0]
    order = jax.random.permutation(rng, b)
    grouped = images[order].reshape(groups, b // groups, *images.shape[1:])
    z, stats = jax.vmap(lambda x: self.encode(params, batch_stats, x))(grouped)
    z = jnp.zeros((b, z.shape[-1]), z.dtype).at[order].set(z.reshape(b, -1))
    return jax.lax.stop_gradient(z), jax.tree.map(lambda s: jnp.mean(s, axis=0), stats)

  def patch_keys(self, params, batch_stats, views, rng):
    """(K, B, D) EMA projections of every patch of `views` (B, H, W, C)."""
    s = self.settings
    cut = patches.partition(views, s.patch_rows, s.patch_cols)
    z, _ = self.keys(params, batch_stats, cut.reshape(-1, *cut.shape[2:]), rng)
    return z.reshape(cut.shape[0], cut.shape[1], -1)

  def targets(self, state: UPReIDState, ema_params, batch, rng) -> dict:
    """Everything the EMA encoder contributes to this step (no gradient flows through it)."""
    s = self.settings
    key_rng, original_rng, patch_rng, mirror_rng = jax.random.split(rng, 4)
    out = {}
    out["key"], out["ema_batch_stats"] = self.keys(ema_params, state.ema_batch_stats, batch["key"],
                                                   key_rng)
    if s.consistency:
      out["original"], _ = self.keys(ema_params, state.ema_batch_stats, batch["original"],
                                     original_rng)
    if s.intrinsic:
      out["key_patches"] = self.patch_keys(ema_params, state.ema_batch_stats, batch["key"],
                                           patch_rng)
      if s.hard_mining:
        mirror = patches.mirror_index(s.patch_rows, s.patch_cols)
        out["mirrored_patches"] = self.patch_keys(ema_params, state.ema_batch_stats,
                                                  batch["query"], mirror_rng)[mirror]
    return out

  def losses(self, params, state: UPReIDState, batch: dict, targets: dict):
    s = self.settings
    query, batch_stats = self.encode(params, state.batch_stats, batch["query"])
    parts = {"loss_image": info_nce(query, targets["key"], state.queue, s.temperature)}
    total = parts["loss_image"]
    if s.consistency:
      augmented = query @ targets["key"].T
      original = targets["original"] @ targets["original"].T
      parts["loss_consistency"] = mmd(augmented, original, s.mmd_kernel_mul, s.mmd_kernel_num)
      total = total + s.consistency_weight * parts["loss_consistency"]
    if s.intrinsic:
      cut = patches.partition(batch["query"], s.patch_rows, s.patch_cols)
      # Patch statistics are not kept: evaluation and fine-tuning see whole images.
      patch_queries, _ = self.encode(params, state.batch_stats, cut.reshape(-1, *cut.shape[2:]))
      patch_queries = patch_queries.reshape(cut.shape[0], cut.shape[1], -1)
      nce = jax.vmap(lambda q, k, negatives: info_nce(q, k, negatives, s.temperature))
      per_position = nce(patch_queries, targets["key_patches"], state.patch_queues)
      if s.hard_mining:
        mirrored = nce(patch_queries, targets["mirrored_patches"], state.patch_queues)
        per_position = 0.5 * (per_position + mirrored)
      parts["loss_patch"] = jnp.mean(per_position)
      total = total + s.patch_weight * parts["loss_patch"]
    return total, (batch_stats, parts)

  def train_step(self, state: UPReIDState, batch: dict, rng: jax.Array):
    s = self.settings
    ema_params = ema.update(state.ema_params, state.params, s.momentum)
    targets = self.targets(state, ema_params, batch, rng)
    (total, (batch_stats, parts)), grads = self.update.value_and_grad(
        self.losses, state.params, state, batch, targets)
    stepped, measurements = self.update.apply(state, grads, batch_stats, {"loss": total, **parts})
    image_queue, pointer = queue.enqueue(state.queue, state.queue_pointer, targets["key"])
    patch_queues = state.patch_queues
    if s.intrinsic:
      patch_queues, _ = jax.vmap(queue.enqueue, in_axes=(0, None, 0))(
          state.patch_queues, state.queue_pointer, targets["key_patches"])
    new_state = stepped.replace(
        ema_params=ema_params, ema_batch_stats=targets["ema_batch_stats"], queue=image_queue,
        patch_queues=patch_queues, queue_pointer=pointer)
    return new_state, measurements

  def features(self, state: UPReIDState, images: jax.Array) -> jax.Array:
    """The pooled backbone feature of the online encoder: what fine-tuning starts from."""
    low = self.update.to_compute
    _, intermediates = self.model.apply(
        {"params": low(state.params), "batch_stats": state.batch_stats}, low(images), train=False)
    return intermediates["pre_neck"].astype(jnp.float32)


def check_config(config) -> None:
  s = config.upreid
  if config.train.batch_size % s.key_bn_groups:
    raise ConfigError(f"train.batch_size={config.train.batch_size} must be a multiple of "
                      f"upreid.key_bn_groups={s.key_bn_groups}")
  if s.queue_size < config.train.batch_size:
    raise ConfigError(f"upreid.queue_size={s.queue_size} must hold at least one batch "
                      f"({config.train.batch_size})")
  if s.intrinsic and (config.data.height % s.patch_rows or config.data.width % s.patch_cols):
    raise ConfigError(f"data.height x width = {config.data.height}x{config.data.width} must split "
                      f"into upreid.patch_rows x patch_cols = {s.patch_rows}x{s.patch_cols} patches")
  if s.hard_mining and not s.intrinsic:
    raise ConfigError("upreid.hard_mining selects patch positives: it needs upreid.intrinsic=True")


def validate(config) -> None:
  """`config.model` (an encoder) and `config.upreid`, then `check_config`'s cross-field rules.

  Its batches are views of single images (`pipeline.view_dataset`), not P x K
  identities, so `data.num_instances` does not constrain the batch.
  """
  config_rules.check(config, {"model": encoder_rules(config.get("model")), "upreid": UPREID_RULES})
  check_config(config)


def build(config, num_classes: int, make_update) -> base.Method:
  del num_classes  # unlabelled pre-training
  check_config(config)
  model = build_encoder(config.model, config.upreid.projection_hidden, config.upreid.projection_dim)
  impl = UPReID(model=model, update=make_update(), settings=config.upreid)
  # Unlabelled images: two augmented views and the original per image.
  return base.method(config.method, init=impl.init, train_step=impl.train_step,
                     features=impl.features, after_init_from=impl.after_init_from,
                     train_dataset=pipeline.view_dataset, impl=impl)
