"""Knowledge distillation (FastReID, He et al. 2020, section 6): a frozen teacher trains a student.

The student is a `Supervised` method (its own `config.loss`, compute dtype
and freeze). The teacher, a model of `config.teacher.model` restored from
another run's checkpoint, runs in eval mode under `stop_gradient`; the loss
adds, to the student's ReID loss,
  - `logit_weight` x the logit loss on the two classifiers' logits:
    `l1` (the paper's eq. 8) or `kl` (the released `Distiller`'s symmetric
    KL at temperature 16), chosen by `config.teacher.loss`;
  - `pkt_weight` x PKT (eq. 9) on the inference features, the f_s "used for
    inference" of the paper: each model's `test_feature` (the BNNeck
    output by default).
A margin-softmax model's classifier returns cosines; like FastReID's
`pred_class_logits` they are scaled (by `loss.softmax_scale` for the
student, `teacher.logit_scale` for the teacher) before the logit loss.

The teacher's variables live in the train state (`DistillState.teacher`), so
checkpoints and resume need nothing special. `init` runs under jit, where
files cannot be read, and leaves them zero; the loop then calls
`load_weights` once on a fresh state (never on a resumed one).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jreid import config_rules
from jreid.config_rules import Float, OneOf, Str
from jreid.core import checkpoint
from jreid.core.state import TrainState
from jreid.errors import CheckpointMismatchError, ConfigError
from jreid.losses import distill as kd
from jreid.losses import objective
from jreid.methods import base, supervised
from jreid.models.reid import build_model, model_config, model_rules

LOGIT_LOSSES = ("l1_pkt", "kl_pkt")


def teacher_config(**overrides) -> ml_collections.ConfigDict:
  """The `config.teacher` section with its defaults (FastReID's released recipe)."""
  config = ml_collections.ConfigDict(dict(
      model=model_config(),  # the teacher run's `config.model`
      checkpoint="",      # the teacher run's workdir or its checkpoints/ folder
      loss="kl_pkt",      # "l1_pkt" (paper eq. 8-10) | "kl_pkt" (released code: symmetric KL)
      temperature=16.0,   # of the symmetric KL
      logit_weight=1.0,
      pkt_weight=1.0,     # the paper's alpha
      logit_scale=0.0))   # 0: linear classifier; > 0: the teacher's margin-softmax scale
  config.update(overrides)
  return config


TEACHER_RULES = dict(checkpoint=Str(), loss=OneOf(*LOGIT_LOSSES),
                     temperature=Float(0, open_low=True), logit_weight=Float(0),
                     pkt_weight=Float(0), logit_scale=Float(0))


@flax.struct.dataclass
class DistillState(TrainState):
  teacher: Any  # {"params", "batch_stats"} of the frozen teacher; never updated


@dataclasses.dataclass(frozen=True)
class Distill:
  student: supervised.Supervised
  teacher_model: nn.Module
  teacher_checkpoint: str
  loss: str = "kl_pkt"
  temperature: float = 16.0
  logit_weight: float = 1.0
  pkt_weight: float = 1.0
  student_logit_scale: float = 0.0   # 0: the model's logits as they are
  teacher_logit_scale: float = 0.0
  student_feature: str = "neck"

  def init(self, rng: jax.Array, images: jax.Array) -> DistillState:
    state = self.student.init(rng, images)
    shapes = jax.eval_shape(functools.partial(self.teacher_model.init, train=False), rng, images)
    teacher = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                           {"params": shapes["params"], "batch_stats": shapes.get("batch_stats", {})})
    fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    return DistillState(**fields, teacher=teacher)

  def load_weights(self, state: DistillState) -> DistillState:
    """Fills the teacher from `teacher_checkpoint` (eagerly, outside jit), checking it fits."""
    stored, where = checkpoint.restore_variables(self.teacher_checkpoint)
    stored_shapes = checkpoint.shapes_by_name(stored)
    expected_shapes = checkpoint.shapes_by_name(state.teacher)
    for name, shape in expected_shapes.items():
      if (name.endswith("classifier/kernel") and name in stored_shapes
          and stored_shapes[name][-1] != shape[-1]):
        raise CheckpointMismatchError(
            f"teacher {where} was trained on {stored_shapes[name][-1]} identities but this run has "
            f"{shape[-1]}: teacher and student must be trained on the same data (config.data.train)")
    problem = checkpoint.describe_mismatch(stored_shapes, expected_shapes)
    if problem:
      raise CheckpointMismatchError(
          f"teacher {where} does not fit config.teacher.model: {problem}")
    teacher, _, _ = checkpoint.merge_matching(state.teacher, stored, prefix="teacher")
    sharding = getattr(jax.tree.leaves(state.params)[0], "sharding", None)  # the student's placement
    return state.replace(teacher=jax.device_put(teacher, sharding))

  def teacher_outputs(self, teacher, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The frozen teacher in eval mode, in the student's compute dtype: (feature, logits) in float32."""
    low = self.student.to_compute
    feature, out = self.teacher_model.apply(low(jax.lax.stop_gradient(teacher)), low(images),
                                            train=False)
    logits = _scaled(out["logits"].astype(jnp.float32), self.teacher_logit_scale)
    return jax.lax.stop_gradient(feature.astype(jnp.float32)), jax.lax.stop_gradient(logits)

  def kd_losses(self, student_out: dict, teacher_feature, teacher_logits) -> dict:
    """The two distillation parts, unweighted, from the student's training outputs."""
    for key in ("logits", self.student_feature):
      if key not in student_out:
        raise ConfigError(f"distill needs the student model's {key!r} output; it has "
                          f"{sorted(student_out)}")
    logits = _scaled(student_out["logits"], self.student_logit_scale)
    if self.loss == "kl_pkt":
      logit_part = kd.symmetric_kl(logits, teacher_logits, self.temperature)
    else:
      logit_part = kd.logit_l1(logits, teacher_logits)
    return {"loss_kd_logit": logit_part,
            "loss_pkt": kd.pkt(student_out[self.student_feature], teacher_feature)}

  def train_step(self, state: DistillState, batch: dict, rng: jax.Array):
    teacher_feature, teacher_logits = self.teacher_outputs(state.teacher, batch["image"])

    def losses(params):
      out, batch_stats = self.student.apply_train(params, state.batch_stats, batch["image"], rng)
      total, parts = objective.reid_losses(out, batch["label"], self.student.loss_config)
      distill = self.kd_losses(out, teacher_feature, teacher_logits)
      total = (total + self.logit_weight * distill["loss_kd_logit"]
               + self.pkt_weight * distill["loss_pkt"])
      return total, (batch_stats, {**parts, **distill})

    update = self.student.update
    (total, (batch_stats, parts)), grads = update.value_and_grad(losses, state.params)
    return update.apply(state, grads, batch_stats, {"loss": total, **parts})

  def features(self, state: DistillState, images: jax.Array) -> jax.Array:
    return self.student.features(state, images)

  def spatial_features(self, state: DistillState, images: jax.Array) -> jax.Array:
    return self.student.spatial_features(state, images)


def _scaled(logits: jax.Array, scale: float) -> jax.Array:
  return logits * scale if scale else logits


def build(config, num_classes: int, make_update) -> base.Method:
  teacher = config.teacher
  expected = set(teacher_config().keys())
  if set(teacher.keys()) != expected:
    raise ConfigError(f"config.teacher keys differ from teacher_config(): unknown "
                      f"{sorted(set(teacher.keys()) - expected)}, missing "
                      f"{sorted(expected - set(teacher.keys()))}")
  if teacher.loss not in LOGIT_LOSSES:
    raise ConfigError(f"teacher.loss={teacher.loss!r}; choose one of {LOGIT_LOSSES}")
  if not teacher.checkpoint:
    raise ConfigError("config.teacher.checkpoint is empty: pass the workdir of a trained teacher "
                      "run (--config.teacher.checkpoint=DIR)")
  student = supervised.build_supervised(config, num_classes, make_update)
  teacher_model = build_model(teacher.model, num_classes,
                              cosine_classifier=teacher.logit_scale > 0)
  student_scale = config.loss.softmax_scale if objective.cosine_classifier(config.loss) else 0.0
  impl = Distill(student=student, teacher_model=teacher_model,
                 teacher_checkpoint=str(teacher.checkpoint), loss=teacher.loss,
                 temperature=float(teacher.temperature), logit_weight=float(teacher.logit_weight),
                 pkt_weight=float(teacher.pkt_weight), student_logit_scale=float(student_scale),
                 teacher_logit_scale=float(teacher.logit_scale),
                 student_feature=config.model.test_feature)
  return base.method(config.method, init=impl.init, train_step=impl.train_step,
                     features=impl.features, spatial_features=impl.spatial_features,
                     load_weights=impl.load_weights, impl=impl)


def validate(config) -> None:
  """The student's sections (as `supervised`) and `config.teacher` with its model."""
  supervised.validate(config)
  teacher = config.get("teacher")
  rules = dict(TEACHER_RULES, model=model_rules(teacher.get("model") if hasattr(teacher, "get") else None))
  config_rules.check(config, {"teacher": rules})
