"""The notebook API behind `jreid.train` and `jreid.load` (README, "Python API").

`load(workdir)` rebuilds a finished run from what it wrote: its config.json
(the model, the input size and normalisation, the evaluation settings) and
its latest checkpoint, restored as the loop resumes (`loop.prepare`, then
`Checkpointer.restore` into `abstract_state`). `Run.features` and
`Run.evaluate` then compute exactly what the run's own evaluation computed:
the same jitted feature function, batch size, padding and post-processing.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import ml_collections
import numpy as np

from jreid import config_blocks, protocols
from jreid.core import checkpoint, sharding
from jreid.data import sources, transforms
from jreid.errors import ConfigError, RunNotFoundError
from jreid.evaluation import retrieval
from jreid.models.reid import from_flat_config
from jreid.train import loop


def train(config, workdir: str | pathlib.Path) -> dict:
  """Runs `config.protocol` in `workdir` as `python -m jreid.main` does; returns its results."""
  return protocols.run(config, workdir)


SAVED_SECTIONS = ("model", "data", "optim", "train", "eval")  # what rebuilding any run reads


def saved_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
  """The run's config.json, upgraded to today's layout and checked as a new run's config is.

  Damage (not JSON, not an object, a section missing, a value of the wrong
  type) is a ConfigError naming the file and the key, not a traceback from
  the code that would read it.
  """
  config_path = workdir / "config.json"
  if not workdir.is_dir():
    raise RunNotFoundError(f"no run folder {workdir}")
  if not config_path.is_file():
    raise RunNotFoundError(f"{config_path} not found: {workdir} is not a jreid run folder")
  try:
    saved = json.loads(config_path.read_text())
  except UnicodeDecodeError as err:
    raise ConfigError(f"{config_path} is not a text file ({err.reason} at byte {err.start}); "
                      "it should hold the run's config as JSON") from None
  except json.JSONDecodeError as err:
    raise ConfigError(f"{config_path} is not valid JSON ({err.msg} at line {err.lineno}, "
                      f"column {err.colno})") from None
  if not isinstance(saved, dict):
    raise ConfigError(f"{config_path} holds a JSON {type(saved).__name__}, not the object "
                      "(config sections by name) a run writes")
  for key in SAVED_SECTIONS + ("method",):
    if key not in saved:
      what = "section" if key in SAVED_SECTIONS else "key"
      raise ConfigError(f"{config_path} lacks the config {what} {key!r} (a run writes "
                        f"{list(SAVED_SECTIONS) + ['method']} and more)")
    if key in SAVED_SECTIONS and not isinstance(saved[key], dict):
      raise ConfigError(f"{config_path}: config.{key} is {saved[key]!r}, not a section")
  try:
    config = upgrade_config(ml_collections.ConfigDict(saved))
    protocols.validate(config, recipes=False)
  except ConfigError as err:
    raise ConfigError(f"{config_path}: {err}") from None
  return config


def upgrade_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A config.json of an older jreid in today's layout: the flat model section becomes the
  per-family one, and keys added since take their defaults (which reproduce the old
  behaviour: e.g. `conv_impl`, `train.epochs` change no number)."""
  if isinstance(config.model.get("backbone"), str):
    config.model = from_flat_config(config.model)
  sections = {"optim": config_blocks.optim(), "train": config_blocks.train(),
              "eval": config_blocks.evaluation(), None: config_blocks.run(method=config.method)}
  for name, defaults in sections.items():
    block = config if name is None else config[name]
    for key, value in defaults.items():
      if key not in block:
        block[key] = value
  return config


def _protocol_hint(workdir: pathlib.Path, config) -> str:
  """A lifelong or dg workdir keeps its runs' checkpoints in sub-folders: name them."""
  runs = sorted(p.name for p in workdir.iterdir() if (p / checkpoint.CHECKPOINT_SUBDIR).is_dir())
  if not runs:
    return ""
  return (f"; it is a {config.get('protocol', '?')!r} protocol folder whose runs are "
          f"sub-folders: load one of {runs}")


def load(workdir: str | pathlib.Path) -> "Run":
  """The finished run in `workdir` (its config.json and latest checkpoint)."""
  workdir = pathlib.Path(workdir).expanduser()
  config = saved_config(workdir)
  if not (workdir / checkpoint.CHECKPOINT_SUBDIR).is_dir():
    raise RunNotFoundError(f"{workdir} has no {checkpoint.CHECKPOINT_SUBDIR}/ folder"
                           + _protocol_hint(workdir, config))
  prepared = loop.prepare(config)
  ckpt = checkpoint.Checkpointer(workdir / checkpoint.CHECKPOINT_SUBDIR, read_only=True)
  step = ckpt.latest_step()
  if step is None:
    raise RunNotFoundError(f"{ckpt.directory} holds no complete checkpoint")
  try:
    state, _ = ckpt.restore(step, prepared.abstract_state)
  finally:
    ckpt.close()
  return Run(workdir, config, prepared, state, step)


@dataclasses.dataclass
class Run:
  """A trained run: its config, its train state, and its evaluation's feature function."""
  workdir: pathlib.Path
  config: ml_collections.ConfigDict
  prepared: loop.Prepared  # method, options, mesh, abstract_state, the run's parsed data
  state: object
  step: int                # of the restored checkpoint

  @property
  def features_fn(self):
    """The loop's jitted features function (state replicated, batch split, constants bound)."""
    return self.prepared.features_fn

  @property
  def spatial_fn(self):
    return self.prepared.spatial_fn

  def _check_pixels(self, images) -> np.ndarray:
    images = np.asarray(images)
    height, width = self.config.data.height, self.config.data.width
    expected = f"(N, {height}, {width}, 3) raw RGB pixels, uint8 or float in 0..255 (NHWC)"
    if images.ndim != 4 or images.shape[1:] != (height, width, 3):
      raise ValueError(f"features() expects {expected}; got shape {images.shape} "
                       "(resize to the run's data.height x data.width first)")
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
      raise ValueError(f"features() expects {expected}; got dtype {images.dtype}")
    if images.size and images.dtype != np.uint8 and not (
        np.isfinite(images).all() and images.min() >= 0 and images.max() <= 255):
      raise ValueError(f"features() expects {expected}; got values in "
                       f"[{images.min()}, {images.max()}] (already normalised?)")
    return images

  def features(self, images) -> np.ndarray:
    """(N, D) float32 test features of raw pixels, as the run's evaluation embeds its images.

    Pixels are normalised with the run's `data.mean/std` and embedded in
    batches of `eval.batch_size` (rounded up to the device count, the last one
    zero-padded), as `retrieval.extract_features` does.
    """
    if jax.process_count() > 1:
      raise RuntimeError("Run.features runs in a single process; evaluation spreads over hosts itself")
    images = self._check_pixels(images)
    mesh, data = self.prepared.mesh, self.config.data
    batch_size = -(-self.config.eval.batch_size // mesh.devices.size) * mesh.devices.size
    chunks = []
    for start in range(0, len(images), batch_size):
      batch = transforms.normalize(images[start:start + batch_size], data.mean, data.std)
      valid = len(batch)
      batch = np.concatenate([batch, np.zeros((batch_size - valid,) + batch.shape[1:], batch.dtype)])
      embeddings = self.features_fn(self.state, sharding.global_batch(batch, mesh))
      chunks.append(np.asarray(jax.device_get(embeddings))[:valid])
    if not chunks:  # no image: the feature width still comes from the model
      sample = jax.ShapeDtypeStruct((batch_size, data.height, data.width, 3), np.float32)
      width = jax.eval_shape(self.features_fn, self.state, sample).shape[-1]
      return np.zeros((0, width), np.float32)
    return np.concatenate(chunks).astype(np.float32)

  def evaluate(self, name: str, *, report: retrieval.ReportOptions | None = None) -> dict:
    """The numbers of dataset `name` (under `data.root`) as the run's results.json holds them.

    The run's own evaluation settings apply (`eval.metric`, `eval.batch_size`,
    query expansion, re-ranking, ROC, ...); `report` also draws the pictures.
    """
    tests = self.prepared.data.tests  # the run's test sets, already parsed
    split = tests[name] if name in tests else sources.get(name, self.config.data)
    return retrieval.evaluate_split(
        self.features_fn, self.state, split, mesh=self.prepared.mesh, options=self.prepared.options,
        batch_size=self.config.eval.batch_size, metric=self.config.eval.metric, report=report,
        post=retrieval.PostProcessing.from_config(self.config.eval), spatial_fn=self.spatial_fn,
        name=name)
