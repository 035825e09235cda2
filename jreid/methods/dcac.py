"""DCAC (Li & Gong, "Unleashing the potential of pre-trained diffusion models for generalizable
person re-identification"): a ReID model trained with a diffusion model's feedback.

One step on a P x K batch:

  ReID       the encoder (CLIP ViT-B/16 at 256x128, patch conv frozen) -> BNNeck ->
             bias-free classifier; ID loss = label-smoothed CE (eps 0.1) on the logits,
             PCL = CE(norm(BN feature) . M^T / 0.01) against a memory M of one unit
             prototype per identity (`jreid.losses.cluster_memory`);
  condition  c = softmax(logits / tau_c) @ P, one token of the UNet's cross-attention
             width (`jreid.models.condition`; instance / class variants for Tab. 7),
             not detached: the diffusion loss trains the encoder through it;
  diffusion  a latent sampled from the frozen VAE's posterior of the un-augmented image
             (cached once, `jreid.data.posterior_cache`), noised at t ~ U{0..999}, and
             the UNet's epsilon-prediction MSE given c (`jreid.methods.dcac_unet`:
             LoRA and the other fine-tuning variants of Tab. 5);
  total      CE + PCL + lambda * diffusion (lambda 1).

M is rebuilt from the class centroids of the normalised BN features of the
whole training set at every epoch start (the platform's `on_epoch_start`),
then after each step the hardest sample of each identity in the batch moves
its prototype, M[y] <- normalise(0.2 M[y] + 0.8 x). Evaluation uses the BN
feature (`model.test_feature="neck"`); the diffusion branch is training only.
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
from jreid.config_rules import Bool, Float, Int, OneOf, Str
from jreid.core import precision
from jreid.core.state import TrainState
from jreid.data import pipeline, posterior_cache
from jreid.errors import ConfigError
from jreid.evaluation.distance import normalise_rows
from jreid.losses.cluster_memory import cluster_centroids, hardest_update, memory_contrastive_loss
from jreid.losses.softmax import cross_entropy
from jreid.methods import base, dcac_unet
from jreid.methods.dcac_weights import DiffusionSource
from jreid.methods.supervised import check_identity_batches
from jreid.models.condition import SCHEMES, Condition
from jreid.models.reid import build_model, model_rules

# A recipe (`recipe:configs/ldm_synth.py`) is trained once by the loop and replaced by its folder.
RECIPE_FIELDS = ("dcac.weights",)


def dcac_config(**overrides) -> ml_collections.ConfigDict:
  """The `config.dcac` section (the paper's Market-1501 settings and the release's, METHODS.md)."""
  config = ml_collections.ConfigDict(dict(
      condition="correlation",   # "correlation" | "class" | "instance" (Tab. 7)
      diffusion="lora",          # jreid.methods.dcac_unet.VARIANTS (Tab. 5); "none": the baseline
      temperature=0.6,           # tau_c: 0.1 CUHK03, 0.6 Market / Duke, 1.0 MSMT17 and multi-source
      weight=1.0,                # lambda, the diffusion loss's weight
      label_smoothing=0.1,
      pcl_temperature=0.01, pcl_momentum=0.2,
      lora_rank=8,               # 32 for MSMT17 and multi-source
      lora_alpha=1.0,            # scale alpha / rank
      lora_targets=r".*/(attn1|attn2)/(to_q|to_k|to_v|to_out_0)/kernel|.*/ff/net_0/proj/kernel",
      weights="",                # a diffusers-format folder (unet/, vae/): Stable Diffusion v1.5
      preset="sd15",             # with weights="random": the architecture ("sd15" | "tiny")
      vae_size=128,              # the VAE's square input side
      timesteps=1000, beta_start=8.5e-4, beta_end=0.012,
      posterior_cache="",        # folder of the VAE posterior cache; "" = <data.root>/cache/vae_posteriors
      remat=False,               # recompute the UNet's activations in the backward pass
  ))
  config.update(overrides)
  return config


DCAC_RULES = dict(
    condition=OneOf(*SCHEMES), diffusion=OneOf(*dcac_unet.VARIANTS),
    temperature=Float(0, open_low=True), weight=Float(0), label_smoothing=Float(0, 1, open_high=True),
    pcl_temperature=Float(0, open_low=True), pcl_momentum=Float(0, 1),
    lora_rank=Int(1), lora_alpha=Float(0, open_low=True), lora_targets=Str(),
    weights=Str(), preset=OneOf("sd15", "tiny", "synth"), vae_size=Int(8),
    timesteps=Int(1), beta_start=Float(0, 1, open_low=True), beta_end=Float(0, 1, open_low=True),
    posterior_cache=Str(), remat=Bool(),
)


DIFFUSION_BRANCH = ("condition", "unet", "lora")  # params beside the ReID model's


def reid_params(params: dict) -> dict:
  """The ReID model's own params (backbone, head): what evaluation and export use."""
  return {k: v for k, v in params.items() if k not in DIFFUSION_BRANCH}


@flax.struct.dataclass
class DCACState(TrainState):
  memory: jax.Array  # (num_classes, D) unit prototypes of the BN feature, one per identity


@dataclasses.dataclass(frozen=True)
class DCAC:
  model: nn.Module           # the ReID model (backbone, BNNeck, classifier)
  condition: nn.Module | None
  denoiser: dcac_unet.Denoiser | None
  source: DiffusionSource | None
  update: Any                # the loop's shared update step
  settings: Any              # config.dcac
  num_classes: int
  _posteriors: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

  def init(self, rng: jax.Array, images: jax.Array) -> DCACState:
    reid_rng, cond_rng, unet_rng, lora_rng = jax.random.split(rng, 4)
    variables = self.model.init(reid_rng, images, train=False)
    params = dict(variables["params"])
    _, out = self.model.apply(variables, images, train=False)
    if self.condition is not None:
      labels = jnp.zeros(images.shape[:1], jnp.int32)
      params["condition"] = self.condition.init(cond_rng, out["logits"], out["pre_neck"],
                                                labels)["params"]
    if self.denoiser is not None:
      random_unet = self.source.random_unet(unet_rng)
      params.update(self.denoiser.init_params(lora_rng, random_unet))
    dim = out["neck"].shape[-1]
    return DCACState(step=jnp.zeros((), jnp.int32), params=params,
                     batch_stats=variables.get("batch_stats", {}), opt_state=self.update.init(params),
                     memory=jnp.zeros((self.num_classes, dim), jnp.float32))

  def load_weights(self, state: DCACState) -> DCACState:
    """The pre-trained UNet leaves this variant trains (partial / full) replace the random ones."""
    if self.denoiser is None or "unet" not in state.params or self.denoiser.variant == "scratch":
      return state
    trainable, _ = self.denoiser.split(self.source.unet_params())
    params = dict(state.params, unet=jax.device_put(trainable, jax.tree.leaves(state.params)[0].sharding))
    return state.replace(params=params, opt_state=jax.jit(self.update.init)(params))

  def load_constants(self):
    """The UNet leaves that do not train (never checkpointed)."""
    if self.denoiser is None:
      return {}
    if self.denoiser.variant in ("full", "scratch"):
      return {}
    return self.denoiser.split(self.source.unet_params())[1]

  def losses(self, params, batch_stats, memory, batch, rng, frozen):
    low = self.update.to_compute
    drop_rng, diffusion_rng = jax.random.split(rng)
    (_, out), updates = self.model.apply(
        {"params": low(reid_params(params)), "batch_stats": batch_stats}, low(batch["image"]),
        train=True, mutable=["batch_stats"], rngs={"dropout": drop_rng})
    out = precision.cast_floating(out, jnp.float32)
    s, labels = self.settings, batch["label"]
    ce = cross_entropy(out["logits"], labels, s.label_smoothing)
    pcl = memory_contrastive_loss(out["neck"], labels, memory, s.pcl_temperature)
    parts = {"loss_ce": ce, "loss_pcl": pcl}
    total = ce + pcl
    if self.denoiser is not None:
      context = self.condition.apply({"params": params["condition"]}, out["logits"],
                                     out["pre_neck"], labels)
      diff = self.denoiser.loss(params, frozen, batch["posterior"], context, diffusion_rng,
                                self.source.scaling(), to_compute=low)
      parts["loss_diffusion"] = diff
      total = total + s.weight * diff
    stats = precision.cast_floating(updates["batch_stats"], jnp.float32)
    return total, (stats, {**parts, "neck": out["neck"]})

  def train_step(self, state: DCACState, batch: dict, rng: jax.Array, frozen):
    (total, (stats, parts)), grads = self.update.value_and_grad(
        self.losses, state.params, state.batch_stats, state.memory, batch, rng, frozen)
    neck = parts.pop("neck")
    stepped, measurements = self.update.apply(state, grads, stats, {"loss": total, **parts})
    memory = hardest_update(state.memory, neck, batch["label"], self.settings.pcl_momentum)
    return stepped.replace(memory=memory), measurements

  def features(self, state: DCACState, images: jax.Array, frozen=None) -> jax.Array:
    del frozen  # the diffusion branch is training only
    low = self.update.to_compute
    feature, _ = self.model.apply({"params": low(reid_params(state.params)),
                                   "batch_stats": state.batch_stats},
                                  low(images), train=False)
    return feature.astype(jnp.float32)

  def on_epoch_start(self, state: DCACState, epoch: int, context):
    """M from the class centroids of the normalised BN features of the training set."""
    features = normalise_rows(context.extract(state, context.records))
    labels = np.array([r.pid for r in context.records])
    memory = cluster_centroids(features, labels)
    context.log(f"epoch {epoch + 1}: PCL memory rebuilt from the centroids of {len(labels)} "
                f"images of {memory.shape[0]} identities")
    return state.replace(memory=jax.device_put(memory, state.memory.sharding)), None

  def train_dataset(self, records, **kwargs):
    """The loop's P x K batches plus each image's cached VAE posterior (`posterior`)."""
    if self.denoiser is None:
      return pipeline.train_dataset(records, **kwargs)
    table = self.posteriors(records)
    return pipeline.train_dataset(records, extras=lambda index: {"posterior": np.asarray(table[index])},
                                  **kwargs)

  def posteriors(self, records) -> np.ndarray:
    """The cache's table for `records`, read (or computed) once per process."""
    key = tuple((r.path, r.pid) for r in records)
    if key not in self._posteriors:
      self._posteriors.clear()
      self._posteriors[key] = posterior_cache.ensure(
          list(records), encode=self.source.encoder(), vae_digest=self.source.vae_digest(),
          size=self.settings.vae_size, folder=self.source.cache_folder)
    return self._posteriors[key]


def _denoiser(s, source: DiffusionSource) -> dcac_unet.Denoiser:
  return dcac_unet.Denoiser(unet=source.unet(), variant=s.diffusion, lora_rank=s.lora_rank,
                            lora_scale=s.lora_alpha / s.lora_rank, lora_targets=s.lora_targets,
                            alphas_cumprod=dcac_unet.schedule(s), remat=s.remat)


def validate(config) -> None:
  """`config.model` (a ReID model with a classifier), `config.dcac`, P x K batches."""
  config_rules.check(config, {"model": model_rules(config.get("model")), "dcac": DCAC_RULES})
  if config.model.meta != "reid" or config.model.head != "bnneck":
    raise ConfigError(f"method 'dcac' trains model.meta='reid' with head='bnneck', got "
                      f"{config.model.meta!r} / {config.model.head!r}")
  s = config.dcac
  if s.beta_end <= s.beta_start:
    raise ConfigError(f"dcac.beta_end={s.beta_end} must exceed dcac.beta_start={s.beta_start}")
  check_identity_batches(config)


def check_weights(s) -> None:
  """At build, not in validate: a paper preset names no folder until the user gives one."""
  if s.diffusion not in ("none", "scratch") and not s.weights:
    raise ConfigError(
        f"dcac.diffusion={s.diffusion!r} starts from pre-trained diffusion weights: set "
        "dcac.weights to a diffusers-format folder (holding unet/ and vae/, e.g. "
        "stable-diffusion-v1-5), or to 'random' for tests")


def build(config, num_classes: int, make_update) -> base.Method:
  validate(config)
  s = config.dcac
  model = build_model(config.model, num_classes)
  source = denoiser = condition = None
  if s.diffusion != "none":
    check_weights(s)
    source = DiffusionSource.from_config(config)
    source.check_files()
    denoiser = _denoiser(s, source)
    condition = Condition(num_classes=num_classes, dim=source.context_dim(), scheme=s.condition,
                          temperature=s.temperature)
  impl = DCAC(model=model, condition=condition, denoiser=denoiser, source=source,
              update=make_update(), settings=s, num_classes=num_classes)
  hooks = dict(init=impl.init, train_step=impl.train_step, features=impl.features,
               on_epoch_start=impl.on_epoch_start, train_dataset=impl.train_dataset, impl=impl)
  if denoiser is not None:
    hooks.update(load_weights=impl.load_weights, load_constants=impl.load_constants)
  else:  # the baseline: no constants argument
    hooks.update(train_step=lambda state, batch, rng: impl.train_step(state, batch, rng, {}),
                 features=lambda state, images: impl.features(state, images))
  return base.method(config.method, **hooks)
