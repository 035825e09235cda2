"""DASA (lifelong ReID) and its baselines: one domain's training, as pytree operations.

A *strategy* says which parameters a domain trains and which it keeps as its
own *bank* (restored for that domain's cameras at test time, see
`jreid.evaluation.routing`); everything else is shared and, for the
bank-based strategies, frozen bit for bit:

  dasa      trains every norm's scale/bias (backbone BNs and the BNNeck), every
            SA module and the domain's classifier; the bank is those norms and SA
            kernels plus every BN running statistic (the paper's sec. 3.2).
  da        the same without SA modules (distribution alignment only).
  sa        trains SA modules, the BNNeck and the classifier; the backbone BNs keep
            the pre-trained statistics (eval mode) and weights (the paper's SA:
            "freezing the pre-trained model", the BNNeck "is also trained").
  finetune  trains everything, keeps no bank: one model for every domain.
  lwf       finetune plus Li & Hoiem's logit distillation from the previous
            domain's model (`lifelong.teacher`): KL at temperature T between the
            old model's logits and the new features through the old classifier
            (held fixed: each domain's classifier is discarded once it is done).
  joint     finetune on the union of every domain at once (the upper bound).

The classifier is fresh for every domain (bias-free, N(0, 0.001^2)); the
loss is label-smoothed CE on the BNNeck logits (METHODS.md). Only the
trainable leaves are differentiated, so frozen convs cost no weight
gradient, and only they are updated (weight decay included).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections

from jreid import config_rules
from jreid.config_rules import Float, OneOf, Str
from jreid.core import checkpoint, partition, precision
from jreid.core.state import TrainState
from jreid.errors import ConfigError
from jreid.evaluation.routing import POLICIES
from jreid.losses import objective
from jreid.methods import base, supervised
from jreid.models.reid import ReID, build_model

NORMS = r".*/(scale|bias)"          # every BN / IN affine, BNNeck included (convs have no bias)
ADAPTION = r".*/sa/kernel"          # every SA module
NECK = r"head/neck/.*"
CLASSIFIER = r"head/classifier/kernel"


@dataclasses.dataclass(frozen=True)
class Strategy:
  trainable: str        # params updated while training a domain
  bank: str             # params each domain keeps for itself
  bank_stats: str       # batch_stats each domain keeps for itself
  adaption: bool        # needs SA modules (model.backbone.sa_kernel > 0); the others need none
  backbone_batch_statistics: bool = True  # False: backbone BNs stay in eval mode (pre-trained)
  distill: bool = False  # LwF
  joint: bool = False    # every domain in one step


STRATEGIES = {
    "dasa": Strategy(trainable=f"{NORMS}|{ADAPTION}|{CLASSIFIER}", bank=f"{NORMS}|{ADAPTION}",
                     bank_stats=".*", adaption=True),
    "da": Strategy(trainable=f"{NORMS}|{CLASSIFIER}", bank=NORMS, bank_stats=".*", adaption=False),
    "sa": Strategy(trainable=f"{ADAPTION}|{NECK}|{CLASSIFIER}", bank=f"{ADAPTION}|{NECK}",
                   bank_stats=NECK, adaption=True, backbone_batch_statistics=False),
    "finetune": Strategy(trainable=".*", bank="", bank_stats="", adaption=False),
    "lwf": Strategy(trainable=".*", bank="", bank_stats="", adaption=False, distill=True),
    "joint": Strategy(trainable=".*", bank="", bank_stats="", adaption=False, joint=True),
}


def lifelong_config(**overrides) -> ml_collections.ConfigDict:
  """The `config.lifelong` section: the domain sequence, the strategy and its schedule."""
  config = ml_collections.ConfigDict(dict(
      strategy="dasa",        # a key of STRATEGIES
      domains="",             # comma-separated dataset names, in training order
      unseen="",              # comma-separated datasets evaluated after the last step only
      unseen_policy="stats",  # bank for cameras of untrained domains (jreid.evaluation.routing);
                              # "stats" measured best on SynthPerson's unseen domains (README)
      epochs=80.0,            # per domain; steps = ceil(epochs * train images / batch)
      warmup_epochs=10.0,     # linear warmup from optim.warmup_factor
      first_milestone_epochs=30.0,  # x optim.gamma at this epoch of the first domain ...
      later_milestone_epochs=10.0,  # ... and of every later one
      distill_weight=1.0,     # lwf: weight of the KL term
      distill_temperature=2.0,  # lwf: Li & Hoiem's T
      teacher="",             # lwf: the previous step's workdir (set by the protocol per step)
  ))
  config.update(overrides)
  return config


LIFELONG_RULES = dict(
    strategy=OneOf(*STRATEGIES), domains=Str(), unseen=Str(), unseen_policy=OneOf(*POLICIES),
    epochs=Float(0, open_low=True), warmup_epochs=Float(0),
    first_milestone_epochs=Float(0), later_milestone_epochs=Float(0),
    distill_weight=Float(0), distill_temperature=Float(0, open_low=True), teacher=Str(),
)


@flax.struct.dataclass
class LwFState(TrainState):
  teacher: Any  # {"params", "batch_stats"} of the previous domain's model; never updated


@dataclasses.dataclass(frozen=True)
class Lifelong:
  """One domain's training under a strategy; the protocol builds one per step (its class count)."""
  model: ReID
  strategy: Strategy
  update: Any  # the shared update step, restricted to `strategy.trainable`
  loss_config: Any
  teacher_model: ReID | None = None
  teacher_dir: str = ""
  distill_weight: float = 1.0
  distill_temperature: float = 2.0
  fresh_params: str = CLASSIFIER  # never taken from init_from: each domain's classifier is new

  def init(self, rng: jax.Array, images: jax.Array) -> TrainState:
    variables = self.model.init(rng, images, train=False)
    params, stats = variables["params"], variables.get("batch_stats", {})
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=stats,
                       opt_state=self.update.init(params))
    if not self.strategy.distill:
      return state
    shapes = jax.eval_shape(functools.partial(self.teacher_model.init, train=False), rng, images)
    teacher = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                           {"params": shapes["params"], "batch_stats": shapes.get("batch_stats", {})})
    return LwFState(**{f.name: getattr(state, f.name) for f in dataclasses.fields(state)},
                    teacher=teacher)

  def load_weights(self, state):
    """LwF: the previous domain's model as the teacher (eagerly, outside jit)."""
    if not self.strategy.distill:
      return state
    stored, _ = checkpoint.restore_variables(self.teacher_dir)
    problem = checkpoint.describe_mismatch(checkpoint.shapes_by_name(stored),
                                           checkpoint.shapes_by_name(state.teacher))
    if problem:
      raise ConfigError(f"lifelong.teacher={self.teacher_dir} does not fit this model: {problem}")
    teacher, _, _ = checkpoint.merge_matching(state.teacher, stored, prefix="teacher")
    return state.replace(teacher=jax.device_put(teacher, jax.tree.leaves(state.params)[0].sharding))

  def forward_train(self, params, batch_stats, images):
    """The training forward: (outputs, new batch_stats); backbone BNs in eval mode where asked."""
    low = self.update.to_compute
    (_, out), updates = self.model.apply(
        {"params": low(params), "batch_stats": batch_stats}, low(images), train=True,
        backbone_train=self.strategy.backbone_batch_statistics, mutable=["batch_stats"])
    return (precision.cast_floating(out, jnp.float32),
            precision.cast_floating(updates["batch_stats"], jnp.float32))

  def distillation(self, teacher, images, student_neck) -> jax.Array:
    """LwF's KL(p_old || p_new) * T^2 on the previous domain's classes, through its classifier."""
    teacher = jax.lax.stop_gradient(teacher)
    low = self.update.to_compute
    _, old = self.teacher_model.apply(low(teacher), low(images), train=False)
    old_classifier = teacher["params"]["head"]["classifier"]["kernel"]
    t = self.distill_temperature
    log_old = jax.nn.log_softmax(old["logits"].astype(jnp.float32) / t, axis=-1)
    log_new = jax.nn.log_softmax(student_neck @ old_classifier / t, axis=-1)
    return jnp.mean(jnp.sum(jnp.exp(log_old) * (log_old - log_new), axis=-1)) * t ** 2

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array):
    del rng  # no dropout in the DASA model

    def losses(params):
      out, batch_stats = self.forward_train(params, state.batch_stats, batch["image"])
      total, parts = objective.reid_losses(out, batch["label"], self.loss_config)
      if self.strategy.distill:
        parts["loss_lwf"] = self.distillation(state.teacher, batch["image"], out["neck"])
        total = total + self.distill_weight * parts["loss_lwf"]
      return total, (batch_stats, parts)

    (total, (batch_stats, parts)), grads = self.update.value_and_grad(losses, state.params)
    return self.update.apply(state, grads, batch_stats, {"loss": total, **parts})

  def variables(self, state: TrainState) -> dict:
    return {"params": state.params, "batch_stats": state.batch_stats}

  def features(self, state: TrainState, images: jax.Array) -> jax.Array:
    low = self.update.to_compute
    feature, _ = self.model.apply(low(self.variables(state)), low(images), train=False)
    return feature.astype(jnp.float32)

  def stem_moments(self, state: TrainState, images: jax.Array) -> jax.Array:
    """Per image, the channel means of x and x^2 where x is what the stem norm sees (B, 2C):
    the routing policy "stats" pools them into a camera's statistics."""
    stem_conv = self.model.backbone.STEM_CONV
    _, captured = self.model.apply(
        self.variables(state), images, train=False, mutable=["intermediates"],
        capture_intermediates=lambda module, _: module.scope.path == ("backbone", stem_conv))
    stem = captured["intermediates"]["backbone"][stem_conv]["__call__"][0]
    return jnp.concatenate([jnp.mean(stem, axis=(1, 2)), jnp.mean(stem ** 2, axis=(1, 2))], axis=-1)

  def stem_statistics(self, state: TrainState) -> tuple:
    """The stem norm's running (mean, var): what `stem_moments` of a domain's images should match."""
    stats = state.batch_stats["backbone"][self.model.backbone.STEM_NORM]
    return stats["mean"], stats["var"]

  def bank(self, params, batch_stats) -> dict:
    """One domain's own variables, cut out of a trained state."""
    return {"params": partition.select(params, self.strategy.bank),
            "batch_stats": partition.select(batch_stats, self.strategy.bank_stats)}


def _num_classes_of(workdir: str) -> int:
  stored, _ = checkpoint.restore_variables(workdir)
  return int(stored["params"]["head"]["classifier"]["kernel"].shape[-1])


def build(config, num_classes: int, make_update) -> base.Method:
  lifelong = config.lifelong
  expected = set(lifelong_config().keys())
  if set(lifelong.keys()) != expected:
    raise ConfigError(f"config.lifelong keys differ from lifelong_config(): unknown "
                      f"{sorted(set(lifelong.keys()) - expected)}, missing "
                      f"{sorted(expected - set(lifelong.keys()))}")
  if lifelong.strategy not in STRATEGIES:
    raise ConfigError(f"lifelong.strategy={lifelong.strategy!r}; choose one of {sorted(STRATEGIES)}")
  strategy = STRATEGIES[lifelong.strategy]
  if strategy.adaption != bool(config.model.backbone.get("sa_kernel", 0)):
    need = ("needs SA modules (model.backbone.sa_kernel=5)" if strategy.adaption
            else "has no SA modules (model.backbone.sa_kernel=0)")
    raise ConfigError(f"lifelong.strategy={lifelong.strategy!r} {need}; got model.backbone."
                      f"sa_kernel={config.model.backbone.get('sa_kernel', 0)}")
  if config.model.meta != "reid" or config.model.head != "bnneck":
    raise ConfigError("lifelong methods use the plain ReID model with a BNNeck "
                      "(model.meta='reid', model.head='bnneck')")
  model = build_model(config.model, num_classes)
  teacher_model = None
  if strategy.distill:
    if not lifelong.teacher:
      raise ConfigError("lifelong.strategy='lwf' needs lifelong.teacher, the previous domain's "
                        "workdir (the protocol sets it from the second domain on)")
    teacher_model = build_model(config.model, _num_classes_of(lifelong.teacher))
  impl = Lifelong(model=model, strategy=strategy, update=make_update(trainable=strategy.trainable),
                  loss_config=config.loss, teacher_model=teacher_model,
                  teacher_dir=str(lifelong.teacher),
                  distill_weight=float(lifelong.distill_weight),
                  distill_temperature=float(lifelong.distill_temperature))
  return base.method(config.method, init=impl.init, train_step=impl.train_step,
                     features=impl.features, load_weights=impl.load_weights,
                     fresh_params=impl.fresh_params, bank=impl.bank, stem_moments=impl.stem_moments,
                     stem_statistics=impl.stem_statistics, impl=impl)


def validate(config) -> None:
  """The supervised sections (a domain is a supervised run) and `config.lifelong`."""
  supervised.validate(config)
  config_rules.check(config, {"lifelong": LIFELONG_RULES})
