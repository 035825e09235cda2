"""Config sections with their documented defaults; experiment files in configs/ compose them.

Each function returns one fresh ConfigDict section, so an experiment shows
exactly which blocks it uses and what it changes. No global default tree.
Beside each function, its `*_RULES` declare every field's type and range
(`jreid.config_rules`); `jreid.protocols.validate` checks a config against
them before a run writes anything. Name lists (`optim.name`, `eval.metric`,
...) repeat the keys of the table that resolves them, which lives in a
higher layer; tests/configs/test_config_rules.py keeps the two equal.
"""
from __future__ import annotations

import hashlib
import importlib.util
import pathlib
import traceback

import ml_collections

from jreid.config_rules import Bool, Float, Int, OneOf, Probability, Row, Str, Tuple
from jreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from jreid.errors import ConfigError


def data(*, train: str, test: str, root: str, height: int, width: int) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      root=root,              # real sets live in their usual sub-folder; synth_* are generated here
      format="folder",        # "folder": read images under root; "tfds": jreid's tensorflow-datasets
      tfds_dir="~/tensorflow_datasets",  # ... ArrayRecord builds here (jreid.tools.tfds_build)
      train=train,            # comma-separated dataset names, combined with offset ids
      test=test,              # comma-separated; each evaluated on its own
      height=height, width=width,
      flip_p=0.5, padding=10, erase_p=0.5,
      mean=IMAGENET_MEAN, std=IMAGENET_STD,
      # Optional augmentations (jreid.data.augment; its docstring gives the order), all off:
      autoaug_p=0.0,          # AutoAugment ImageNet policy on the decoded image (FastReID SBS: 0.1)
      rrc_scale=(),           # () = plain resize; else random resized crop with this area range
      rrc_ratio=(3 / 4, 4 / 3),  # its width / height range (torchvision's default)
      color_jitter_p=0.0,     # probability of ColorJitter (FastReID CJ.PROB: 0.5)
      color_jitter=(0.15, 0.15, 0.1, 0.1),  # brightness, contrast, saturation, hue (FastReID CJ)
      grayscale_p=0.0,        # ITU-R 601-2 luma on 3 channels
      blur_p=0.0, blur_sigma=(0.1, 2.0),  # Gaussian blur, sigma uniform in range (SimCLR)
      blur_kernel=9,          # odd kernel side in pixels (SimCLR: ~10% of the image side)
      cutout_p=0.0, cutout_size=64,  # a square of zeros, side in pixels (DeVries & Taylor)
      random_patch_p=0.0,     # paste a patch of an earlier image (FastReID RPT.PROB: 0.5)
      random_patch_pool=512,  # ...taken from the previous this-many images of the stream
      train_subset="",        # a list of training images to keep (jreid.data.subsets: CFS) ...
      train_subset_fraction=1.0,  # ... its first fraction (TransReID-SSL: 0.5 paper, 0.6 scripts)
      num_instances=4,        # K of the P x K identity sampler
      num_threads=2,          # grain read threads per host
      workers=0,              # grain worker processes (0 = in-process)
  ))


_PIXELS = Float(0, 1)  # a channel value as a fraction of 255 (transforms.normalize)
DATA_RULES = dict(
    root=Str(), train=Str(), test=Str(),  # names: jreid.data.datasets checks them when it reads them
    format=OneOf("folder", "tfds"),  # jreid.data.sources.FORMATS
    tfds_dir=Str(),
    height=Int(1), width=Int(1),
    train_subset=Str(), train_subset_fraction=Float(0, 1, open_low=True),
    flip_p=Probability(), padding=Int(0), erase_p=Probability(),
    mean=Tuple(_PIXELS, 3), std=Tuple(Float(0, 1, open_low=True), 3),
    autoaug_p=Probability(),
    rrc_scale=Tuple(Float(0, 1, open_low=True), (0, 2), ordered=True),  # () or (low, high) of the area
    rrc_ratio=Tuple(Float(0, open_low=True), 2, ordered=True),
    color_jitter_p=Probability(),
    color_jitter=Row(Float(0), Float(0), Float(0), Float(0, 0.5)),  # hue shifts at most half a turn
    grayscale_p=Probability(),
    blur_p=Probability(), blur_sigma=Tuple(Float(0, open_low=True), 2, ordered=True),
    blur_kernel=Int(1, odd=True),  # a centred kernel has an odd side
    cutout_p=Probability(), cutout_size=Int(1),
    random_patch_p=Probability(), random_patch_pool=Int(1),
    num_instances=Int(1),
    num_threads=Int(1),   # grain reads nothing with 0 threads (the run would hang)
    workers=Int(0),
)


def loss(**overrides) -> ml_collections.ConfigDict:
  """Bag-of-tricks: CE with label smoothing 0.1 + batch-hard triplet, margin 0.3.

  See `jreid.losses.objective`; a part with weight 0 is not computed.
  """
  config = ml_collections.ConfigDict(dict(
      ce_weight=1.0, label_smoothing=0.1,
      softmax="linear",          # "linear" | "arcface" | "cosface" | "circle" (cosine classifier)
      softmax_scale=64.0, softmax_margin=0.35,
      focal_weight=0.0, focal_alpha=0.25, focal_gamma=2.0,
      triplet_weight=1.0, triplet_margin=0.3, triplet_soft_margin=False,
      triplet_normalize=False,   # L2-normalise features before the triplet distances
      circle_weight=0.0, circle_margin=0.25, circle_gamma=128.0))  # pairwise circle loss
  config.update(overrides)
  return config


LOSS_RULES = dict(
    ce_weight=Float(0),
    label_smoothing=Float(0, 1, open_high=True),  # 1 would make every target uniform
    softmax=OneOf("linear", "arcface", "cosface", "circle"),  # + jreid.losses.objective.MARGIN_SOFTMAXES
    softmax_scale=Float(0, open_low=True), softmax_margin=Float(0),
    focal_weight=Float(0), focal_alpha=Probability(), focal_gamma=Float(0),
    triplet_weight=Float(0), triplet_margin=Float(0), triplet_soft_margin=Bool(),
    triplet_normalize=Bool(),
    circle_weight=Float(0), circle_margin=Float(0), circle_gamma=Float(0, open_low=True),
)


def optim(**overrides) -> ml_collections.ConfigDict:
  """Adam 3.5e-4, L2 5e-4, linear warmup from 0.1, multistep x0.1 (FastReID BoT)."""
  config = ml_collections.ConfigDict(dict(
      name="adam", lr=3.5e-4, weight_decay=5e-4, beta1=0.9, beta2=0.999, eps=1e-8,
      momentum=0.9, nesterov=False,
      weight_decay_end=-1.0,  # >= 0: weight decay cosine-ramped to this value (DINO: 0.04 -> 0.4)
      schedule="multistep", milestones=(), gamma=0.1,
      cosine_delay_steps=0, min_lr=0.0,
      warmup_steps=0, warmup_factor=0.1,
      clip_grad_norm=0.0,
      clip_per_parameter=0.0,  # > 0: each leaf's gradient norm clipped on its own (DINO: 3.0)
      groups=(),          # ((path regex, lr multiplier, wd multiplier), ...); first match wins
      freeze="",          # path regex held fixed (params and BN statistics) ...
      freeze_steps=0,     # ... for this many first steps (SBS: "backbone/.*", 1000)
      frozen="",          # path regex never trained: no gradient, decay or optimiser state
                          # (DCAC: "backbone/patch_embed/.*", CLIP's patch conv)
      # The same durations in epochs (jreid.train.durations); set one form of each, not both.
      milestone_epochs=(), cosine_delay_epochs=0.0, warmup_epochs=0.0, freeze_epochs=0.0))
  config.update(overrides)
  return config


_FRACTION_BELOW_1 = Float(0, 1, open_high=True)
OPTIM_RULES = dict(
    name=OneOf("adam", "adamw", "sgd"),  # jreid.train.optim.OPTIMIZERS
    # No upper bound: too large a rate diverges, and the non-finite-loss guard stops the run;
    # no fixed number separates a large rate from a wrong one.
    lr=Float(0),
    # An L2 / decoupled decay coefficient; above 1 every step shrinks weights by more than
    # the step's gradient can restore (typical: 5e-4 for L2, 0.05 for AdamW).
    weight_decay=Float(0, 1),
    beta1=_FRACTION_BELOW_1, beta2=_FRACTION_BELOW_1, eps=Float(0, open_low=True),
    momentum=_FRACTION_BELOW_1, nesterov=Bool(),
    weight_decay_end=Float(high=1),  # negative: no ramp (the default -1)
    schedule=OneOf("multistep", "cosine", "constant"),  # jreid.train.optim.SCHEDULES
    milestones=Tuple(Int(1), ordered=True), gamma=Float(0, open_low=True),
    cosine_delay_steps=Int(0), min_lr=Float(0),
    warmup_steps=Int(0), warmup_factor=Float(0, 1),
    clip_grad_norm=Float(0),  # 0: no clipping
    clip_per_parameter=Float(0),
    groups=Tuple(Row(Str(), Float(0), Float(0))),  # (path regex, lr multiplier, wd multiplier)
    freeze=Str(), freeze_steps=Int(0), frozen=Str(),
    milestone_epochs=Tuple(Float(0, open_low=True), ordered=True), cosine_delay_epochs=Float(0),
    warmup_epochs=Float(0), freeze_epochs=Float(0),
)


def train(**overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(dict(
      batch_size=64,
      steps=0, epochs=0.0,    # the run's length: one of them (jreid.train.durations)
      epoch_steps=0,          # steps an epoch lasts; 0: one pass over the training images
      log_every=50, checkpoint_every=500, keep_checkpoints=3,
      compute_dtype="float32"))  # "bfloat16": mixed precision (float32 weights and losses)
  config.update(overrides)
  return config


TRAIN_RULES = dict(
    batch_size=Int(1),
    steps=Int(0), epochs=Float(0),  # 0 = not this form (jreid.train.durations needs one of them)
    epoch_steps=Int(0),
    log_every=Int(1), checkpoint_every=Int(1),
    keep_checkpoints=Int(1),  # at least the latest, or a stopped run could not resume
    compute_dtype=OneOf("float32", "bfloat16"),  # jreid.core.precision.COMPUTE_DTYPES
)


def evaluation(**overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(dict(
      batch_size=128, metric="cosine",
      before_training=False,  # also evaluate the untrained model (logged at step 0)
      every=0,                # evaluate every N steps (0 = only at the end)
      visualize=False,        # rank lists, distance and ROC plots under workdir/visualize/ at the end
      query_expansion="",     # "" | "qe" (mean of query + top-m) | "alpha_qe" (cos^alpha weights)
      qe_top_m=1, aqe_k=5, aqe_alpha=3.0,
      rerank=False,           # also report k-reciprocal re-ranked numbers ("rerank" in results)
      rerank_k1=20, rerank_k2=6, rerank_lambda=0.3,
      roc=False,              # also report TPR at FPR 1e-4/1e-3/1e-2 ("roc" in results)
      cuhk03_single_shot=False,  # CUHK03's single-shot CMC ("single_shot" in results)
      dsr=False, dsr_lambda=1e-3))  # DSR spatial matching for partial ReID ("dsr" in results)
  config.update(overrides)
  return config


EVAL_RULES = dict(
    batch_size=Int(1),
    metric=OneOf("cosine", "euclidean"),  # jreid.evaluation.distance.METRICS
    before_training=Bool(), every=Int(0), visualize=Bool(),
    query_expansion=OneOf("", "qe", "alpha_qe"),
    qe_top_m=Int(1), aqe_k=Int(1), aqe_alpha=Float(0),
    rerank=Bool(), rerank_k1=Int(1), rerank_k2=Int(1), rerank_lambda=Float(0, 1),
    roc=Bool(), cuhk03_single_shot=Bool(), dsr=Bool(), dsr_lambda=Float(0),
)


def run(*, method: str, seed: int = 0, protocol: str = "single") -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      method=method, seed=seed,
      protocol=protocol,  # what drives the loop (jreid.protocols): "single" | "lifelong" | "dg";
                          # "lifelong" and "dg" read the config section of that name
      resume="",        # a workdir or checkpoints/ folder to continue (state, step, data)
      init_from="",     # matching weights from a workdir / checkpoints/ folder, or a PyTorch
                        # file (.pth, .pth.tar, .safetensors: ImageNet, LUPerson(-NL), FastReID)
      distributed=False))  # call jax.distributed.initialize() (multi-host)


RUN_RULES = dict(
    method=Str(),    # a name of jreid.methods.METHODS (jreid.protocols.validate checks it)
    # jax.random.key keeps 32 bits without x64: 2**32 would be seed 0 again.
    seed=Int(0, 2**32 - 1),
    protocol=Str(),  # jreid.protocols.check names the known ones
    resume=Str(), init_from=Str(), distributed=Bool(),
)


def dg(**overrides) -> ml_collections.ConfigDict:
  """The `config.dg` section of the domain-generalisation protocol (`jreid.protocols.dg`).

  DCAC's two protocols (its Sec. 5.1): "single_source" trains once on
  `sources` (combined when several) and tests on each of `targets`;
  "leave_one_out" trains once per dataset of `targets`, on all the others
  combined, and tests on the one held out. The protocol sets `data.train`
  and `data.test` of each run, so the config leaves them empty.
  """
  config = ml_collections.ConfigDict(dict(
      mode="single_source",  # "single_source" | "leave_one_out"
      sources="",            # single_source: comma-separated training sets; leave_one_out: empty
      targets="",            # comma-separated: the held-out test sets (leave_one_out: each in turn)
      test_sources=False,    # single_source: also test on the sources' own test sets (DCAC
                             # Tab. 8), reported under "sources", never in the targets' average
  ))
  config.update(overrides)
  return config


DG_RULES = dict(mode=OneOf("single_source", "leave_one_out"),  # jreid.protocols.dg.MODES
                sources=Str(), targets=Str(), test_sources=Bool())


def rules(config) -> dict:
  """The rules of the sections every config has (and of `dg` where it has one).

  A method adds those of the sections it reads (`model`, `loss`, its own;
  `jreid.methods.validate`).
  """
  out = dict(RUN_RULES, data=DATA_RULES, optim=OPTIM_RULES, train=TRAIN_RULES, eval=EVAL_RULES)
  if "dg" in config:
    out["dg"] = DG_RULES
  return out


def sbs_recipe(config: ml_collections.ConfigDict, arg: str, *, freeze: str = "backbone/.*",
               synth_model: dict | None = None) -> None:
  """FastReID's Base-SBS.yml training recipe, shared by configs/sbs.py and configs/mgn.py.

  Sets `loss`, `optim`, `train`, `eval` and `data` (the model is the config's
  own): CircleSoftmax s=64 m=0.35 with CE eps 0.1, soft-margin triplet;
  Adam 3.5e-4, wd 5e-4, 60 epochs, warmup 2000 iterations from 0.1,
  constant to epoch 30 then cosine to 7.7e-7, `freeze` held for 1000
  iterations; bfloat16 (FastReID's AMP); Market-1501 at 384x128, 16
  instances, AutoAugment p=0.1. `arg` "synth" keeps the schedule's fractions
  over 900 steps on SynthPerson `small` at 128x64 with 8 instances (its
  identities have 10-14 images), float32 (faster on CPU) and the
  `config.model.backbone` changes in `synth_model`; "synth_long" stretches that schedule to 1800
  steps; "smoke" is the seconds-long test run.
  """
  config.loss = loss(softmax="circle", softmax_scale=64.0, softmax_margin=0.35,
                     label_smoothing=0.1, triplet_soft_margin=True)
  config.optim = optim(schedule="cosine", cosine_delay_epochs=30, min_lr=7.7e-7,
                       warmup_steps=2000, warmup_factor=0.1, freeze=freeze, freeze_steps=1000)
  config.train = train(batch_size=64, epochs=60, log_every=100,
                       checkpoint_every=2000, compute_dtype="bfloat16")
  config.eval = evaluation()
  config.data = data(train="market1501", test="market1501", root="~/datasets", height=384, width=128)
  config.data.update(num_instances=16, autoaug_p=0.1)
  if arg in ("synth", "synth_long", "synth_pretrained"):
    length = 2 if arg == "synth_long" else 1
    config.data.update(train="synth_small", test="synth_small", root="~/.cache/jreid",
                       height=128, width=64, padding=5, num_instances=8)
    config.model.backbone.update(synth_model or {})
    config.train.update(steps=900 * length, epochs=0.0, log_every=50, checkpoint_every=300,
                        compute_dtype="float32")
    config.optim.update(warmup_steps=150 * length, freeze_steps=75 * length,
                        cosine_delay_steps=450 * length, cosine_delay_epochs=0.0)
    config.eval.update(before_training=True)
  elif arg == "smoke":
    config.data.update(train="synth_tiny", test="synth_tiny", root="~/.cache/jreid",
                       height=32, width=16, padding=2, num_instances=4)
    config.model.backbone.update(width=8)
    config.train.update(batch_size=16, steps=4, epochs=0.0, log_every=1, checkpoint_every=2,
                        compute_dtype="float32")
    config.optim.update(warmup_steps=2, freeze_steps=1, cosine_delay_steps=2, cosine_delay_epochs=0.0)
    config.eval.update(batch_size=32)


RECIPE = "recipe:"  # `init_from=recipe:configs/x.py[:arg]`: a pre-training run (loop.resolve_init_from)


def recipe_run(value: str, data_root: str) -> tuple[ml_collections.ConfigDict, pathlib.Path]:
  """The config `recipe:<spec>` names (reading its data under `data_root`) and the folder it is
  trained in once: `data_root`/pretrained/<config file>_<config hash>/ (nothing is trained here)."""
  spec = value[len(RECIPE):]
  recipe = load_config(spec)
  recipe.data.root = data_root
  digest = hashlib.sha1(recipe.to_json(sort_keys=True).encode()).hexdigest()[:10]
  name = pathlib.Path(spec.partition(":")[0]).stem
  return recipe, pathlib.Path(data_root).expanduser() / "pretrained" / f"{name}_{digest}"


def get_dotted(config, key: str):
  """config["a"]["b"] for key "a.b"."""
  for part in key.split("."):
    config = config[part]
  return config


def load_config(spec: str) -> ml_collections.ConfigDict:
  """`configs/x.py[:arg]` -> its config, as `--config` gives it to jreid.main.

  A relative path is looked up in the working directory, then in jreid's
  checkout. Every way the file can fail (missing, a folder, not Python, a
  syntax error, an exception in it or in `get_config`, an unknown preset) is
  a one-line ConfigError naming the file: the experiment file is the user's
  code, so its exception is reported with its type, message and line, not
  as jreid's traceback.
  """
  file_name, _, arg = spec.partition(":")
  if not file_name:
    raise ConfigError(f"config spec {spec!r} names no file; expected configs/<name>.py[:preset]")
  candidates = [pathlib.Path(file_name).expanduser(), pathlib.Path(__file__).parents[1] / file_name]
  path = next((c for c in candidates if c.is_file()), None)
  if path is None:
    folder = next((c for c in candidates if c.is_dir()), None)
    if folder is not None:
      raise ConfigError(f"config file {file_name} is a directory, not a Python file; expected "
                        "configs/<name>.py[:preset]")
    raise ConfigError(f"no config file {file_name} in {[str(c.parent) for c in candidates]}")
  if path.suffix != ".py":
    raise ConfigError(f"config file {path} is not a Python file (.py) defining get_config()")
  module_spec = importlib.util.spec_from_file_location(f"jreid_config_{path.stem}", path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as err:
    raise ConfigError(f"config file {path}: syntax error at line {err.lineno}: {err.msg}") from None
  except Exception as err:  # noqa: BLE001  the file is user code: any exception is its error
    raise ConfigError(f"config file {path} failed to import{_where(err, path)}: "
                      f"{type(err).__name__}: {_one_line(err)}") from None
  get_config = getattr(module, "get_config", None)
  if not callable(get_config):
    raise ConfigError(f"config file {path} defines no get_config() function")
  try:
    config = get_config(arg) if arg else get_config()
  except Exception as err:  # noqa: BLE001  as above: the preset's own message, in one line
    preset = f"get_config({arg!r})" if arg else "get_config()"
    kind = "" if type(err) is ValueError else f"{type(err).__name__}: "
    raise ConfigError(f"config file {path}: {preset} failed{_where(err, path)}: "
                      f"{kind}{_one_line(err)}") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"config file {path}: get_config() returned {type(config).__name__}, "
                      "not an ml_collections.ConfigDict")
  return config


def _one_line(err: BaseException) -> str:
  return " ".join(str(err).split()) or "(no message)"


def _where(err: BaseException, path: pathlib.Path) -> str:
  """' at line N' of the innermost frame in the config file itself, if the error passed through it."""
  lines = [frame.lineno for frame in traceback.extract_tb(err.__traceback__)
           if pathlib.Path(frame.filename).resolve() == path.resolve()]
  return f" at line {lines[-1]}" if lines else ""
