"""DINO self-distillation (Caron et al. 2021) as TransReID-SSL pre-trains its ViTs on person images.

One step on a batch of multi-crop views (`jreid.data.multicrop`: 2 global, n
local crops per image):

  teacher    an EMA of the student's parameters (momentum cosine 0.996 -> 1 over
             the run), BN in train mode on its own statistics, embeds the global
             crops only; its logits are centred and sharpened (temperature 0.04)
             and get no gradient;
  student    embeds every crop (one pass per resolution, global first), logits at
             temperature 0.1; the loss is the cross-entropy of every teacher crop
             with every student crop of another view (`jreid.losses.dino`);
  centre     an EMA (0.9) of the teacher's mean logits over the global batch.

The encoder is the backbone (its CLS feature: `pooling="identity"`) with
DINO's head (`jreid.models.dino_head`, under `projector/`); the optimiser
rules of the authors (AdamW, the weight decay cosine 0.04 -> 0.4 without
decay on biases and norms, the last layer frozen for the first epoch, the
per-parameter clip at 3.0) are the config's `optim` section
(`configs/transreid_ssl.py`). The evaluation feature, and what `init_from` of
this run gives a fine-tuning run, is the teacher's backbone: DINO evaluates and
releases the teacher.
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
from jreid.config_rules import Float, Int
from jreid.core import ema, precision
from jreid.core.state import TrainState
from jreid.data import multicrop
from jreid.errors import ConfigError
from jreid.losses import dino
from jreid.methods import base
from jreid.models.backbones import family_of
from jreid.models.contrastive import ContrastiveEncoder, encoder_rules
from jreid.models.dino_head import DINOHead
from jreid.models.reid import build_backbone, pooling_factory


def dino_config(**overrides) -> ml_collections.ConfigDict:
  """The `config.dino` section (the authors' main_dino.py settings, METHODS.md)."""
  config = ml_collections.ConfigDict(dict(
      out_dim=65536, hidden=2048, bottleneck=256,
      student_temp=0.1, teacher_temp=0.04,  # constant teacher temperature, as their scripts
      center_momentum=0.9,
      teacher_momentum=0.996,               # cosine to 1 over the run
      num_local=8, local_height=128, local_width=64,
      global_scale=(0.4, 1.0), local_scale=(0.05, 0.4),
  ))
  config.update(overrides)
  return config


_SCALE = config_rules.Tuple(Float(0, 1, open_low=True), 2, ordered=True)
DINO_RULES = dict(
    out_dim=Int(1), hidden=Int(1), bottleneck=Int(1),
    student_temp=Float(0, open_low=True), teacher_temp=Float(0, open_low=True),
    center_momentum=Float(0, 1), teacher_momentum=Float(0, 1),
    num_local=Int(0), local_height=Int(1), local_width=Int(1),
    global_scale=_SCALE, local_scale=_SCALE,
)


@flax.struct.dataclass
class DINOState(TrainState):
  teacher_params: Any
  teacher_batch_stats: Any
  center: jax.Array  # (out_dim,)


def crop_major(views: jax.Array) -> jax.Array:
  """(B, crops, H, W, C) -> (crops * B, H, W, C), crop 0 of every image first (DINO's order)."""
  return jnp.swapaxes(views, 0, 1).reshape(-1, *views.shape[2:])


@dataclasses.dataclass(frozen=True)
class DINO:
  model: nn.Module
  teacher_model: nn.Module  # the same network without drop path or dropout (DINO's teacher)
  update: Any  # the loop's shared update step
  settings: Any  # config.dino
  total_steps: int

  def init(self, rng: jax.Array, images: jax.Array) -> DINOState:
    variables = self.model.init(rng, images, train=False)
    params, stats = variables["params"], variables.get("batch_stats", {})
    return DINOState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=stats,
                     opt_state=self.update.init(params), teacher_params=params,
                     teacher_batch_stats=stats,
                     center=jnp.zeros((self.settings.out_dim,), jnp.float32))

  def after_init_from(self, state: DINOState) -> DINOState:
    """The teacher starts as a copy of the loaded student, as at a fresh init."""
    copy = lambda tree: jax.tree.map(jnp.copy, tree)  # own buffers: the state is donated
    return state.replace(teacher_params=copy(state.params),
                         teacher_batch_stats=copy(state.batch_stats))

  def logits(self, params, batch_stats, images, rng=None):
    """(head logits in float32, BN statistics after this train-mode pass); the student's with
    `rng` (its drop path), the teacher's without."""
    low = self.update.to_compute
    model = self.teacher_model if rng is None else self.model
    (z, _), updates = model.apply({"params": low(params), "batch_stats": batch_stats},
                                  low(images), train=True, mutable=["batch_stats"],
                                  rngs=None if rng is None else {"dropout": rng})
    return (z.astype(jnp.float32),
            precision.cast_floating(updates.get("batch_stats", {}), jnp.float32))

  def losses(self, params, state: DINOState, batch: dict, teacher_logits, rng):
    s = self.settings
    global_rng, local_rng = jax.random.split(rng)
    n_global, b = batch["global"].shape[1], batch["global"].shape[0]
    student, stats = self.logits(params, state.batch_stats, crop_major(batch["global"]), global_rng)
    crops = [student.reshape(n_global, b, -1)]
    if "local" in batch:
      local, stats = self.logits(params, stats, crop_major(batch["local"]), local_rng)
      crops.append(local.reshape(batch["local"].shape[1], b, -1))
    loss, batch_center = dino.dino_loss(jnp.concatenate(crops), teacher_logits, state.center,
                                        student_temp=s.student_temp, teacher_temp=s.teacher_temp,
                                        n_global=n_global)
    return loss, (stats, {"loss_dino": loss, "batch_center": batch_center})

  def train_step(self, state: DINOState, batch: dict, rng: jax.Array):
    s = self.settings
    n_global, b = batch["global"].shape[1], batch["global"].shape[0]
    teacher, teacher_stats = self.logits(state.teacher_params, state.teacher_batch_stats,
                                         crop_major(batch["global"]))
    teacher = jax.lax.stop_gradient(teacher.reshape(n_global, b, -1))
    (total, (stats, parts)), grads = self.update.value_and_grad(
        self.losses, state.params, state, batch, teacher, rng)
    batch_center = parts.pop("batch_center")
    momentum = dino.teacher_momentum(state.step, self.total_steps, base=s.teacher_momentum)
    stepped, measurements = self.update.apply(state, grads, stats,
                                              {"loss": total, **parts, "teacher_momentum": momentum})
    new_state = stepped.replace(
        teacher_params=ema.update(state.teacher_params, stepped.params, momentum),
        teacher_batch_stats=teacher_stats,
        center=dino.update_center(state.center, batch_center, s.center_momentum))
    return new_state, measurements

  def features(self, state: DINOState, images: jax.Array) -> jax.Array:
    """The teacher's backbone CLS feature (what DINO evaluates and fine-tuning starts from)."""
    low = self.update.to_compute
    _, intermediates = self.model.apply(
        {"params": low(state.teacher_params), "batch_stats": state.teacher_batch_stats},
        low(images), train=False)
    return intermediates["pre_neck"].astype(jnp.float32)


def crop_spec(config) -> multicrop.MultiCrop:
  d, s = config.data, config.dino
  return multicrop.MultiCrop(global_size=(d.height, d.width), local_size=(s.local_height, s.local_width),
                             num_local=s.num_local, global_scale=tuple(s.global_scale),
                             local_scale=tuple(s.local_scale), blur_kernel=d.blur_kernel,
                             mean=tuple(d.mean), std=tuple(d.std))


def train_dataset(records, *, options, batch_size, num_steps, seed, host=0, num_hosts=1,
                  num_threads=2, workers=0, spec: multicrop.MultiCrop, **_):
  """Multi-crop batches (the loop's `train_dataset` signature; identity sampling does not apply)."""
  del options  # the crops' sizes and normalisation are the spec's
  return multicrop.multicrop_dataset(records, spec=spec, batch_size=batch_size, num_steps=num_steps,
                                     seed=seed, host=host, num_hosts=num_hosts,
                                     num_threads=num_threads, workers=workers)


def validate(config) -> None:
  config_rules.check(config, {"model": encoder_rules(config.get("model")), "dino": DINO_RULES})
  if family_of(config.model.backbone.name).pooling != "identity":
    raise ConfigError(f"method 'dino' pre-trains a ViT (its CLS feature); "
                      f"model.backbone.name={config.model.backbone.name!r} is not one")


def build(config, num_classes: int, make_update) -> base.Method:
  del num_classes  # unlabelled pre-training
  validate(config)
  s = config.dino
  encoder = lambda model_cfg: ContrastiveEncoder(
      backbone=build_backbone(model_cfg), pooling=pooling_factory(model_cfg)(),
      projector=DINOHead(s.out_dim, s.hidden, s.bottleneck))
  teacher_cfg = ml_collections.ConfigDict(config.model.to_dict())
  teacher_cfg.backbone.update(drop_path=0.0, dropout=0.0)
  impl = DINO(model=encoder(config.model), teacher_model=encoder(teacher_cfg), update=make_update(),
              settings=s, total_steps=config.train.steps)
  spec = crop_spec(config)
  return base.method(config.method, init=impl.init, train_step=impl.train_step,
                     features=impl.features, after_init_from=impl.after_init_from,
                     train_dataset=lambda records, **kw: train_dataset(records, spec=spec, **kw),
                     impl=impl)
