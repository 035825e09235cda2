"""The one training loop every method shares.

It owns: data loading, durations (epochs or steps, `jreid.train.durations`),
the device mesh, jit with donated state, the shared update step
(`jreid.train.update`), a method's frozen constants, checkpoints (resume
order: this workdir, then `config.resume`, then `config.init_from`, then
scratch), epoch hooks and their pseudo-labelled records, the non-finite-loss
guard (`sound_saver`: only sound states become checkpoints), progress lines, `metrics.jsonl`, evaluation and `results.json`. A
method supplies its state, its pure step, its feature function and the
optional hooks of the contract (`jreid.methods.base`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jreid import config_blocks, methods
from jreid.convert.load import LoadReport, load_torch_weights, resized_and_skipped
from jreid.core import checkpoint, partition, paths, reporting, run_once, sharding
from jreid.data import pipeline, sources, subsets
from jreid.data.records import Record, Split, combine, relabel
from jreid.errors import CheckpointMismatchError, ConfigError, EvaluationError
from jreid.evaluation.retrieval import (PostProcessing, ReportOptions, check_split, evaluate_split,
                                        extract_features)
from jreid.methods.base import Method
from jreid.train import durations, update
from jreid.train.sound_saver import SoundSaver
from jreid.train.param_groups import ALL
from jreid.train.update import Update


@dataclasses.dataclass
class RunData:
  train: list
  num_classes: int
  tests: dict[str, Split]


def load_data(config) -> RunData:
  """Parses each named dataset once, even when it is both a training and a test set."""
  names = lambda text: [n.strip() for n in text.split(",") if n.strip()]
  train_names, test_names = names(config.data.train), names(config.data.test)
  splits = {name: sources.get(name, config.data)
            for name in dict.fromkeys(train_names + test_names)}
  train = combine([splits[name] for name in train_names]).train
  if config.data.get("train_subset"):  # a CFS subset (jreid.data.subsets)
    names = subsets.read_list(config.data.train_subset, config.data.train_subset_fraction)
    train = subsets.keep_listed(train, names, config.data.root, config.data.train_subset)
  train = relabel(train)
  return RunData(train=train, num_classes=len({r.pid for r in train}),
                 tests={name: splits[name] for name in test_names})


@dataclasses.dataclass
class Prepared:
  """Everything a run needs before its first step; also what tools use to rebuild a model."""
  config: Any  # the run's config with every duration in steps
  epochs: durations.Epochs
  data: RunData
  mesh: jax.sharding.Mesh
  update: Update
  method: Method
  options: pipeline.ImageOptions
  abstract_state: object  # shapes, dtypes and shardings of the train state
  fresh_state: Callable[[], object]  # a newly initialised state (seeded by config.seed)
  constants: object  # the method's frozen constants on the devices; None without any
  train_step: Callable  # jitted (state, batch, rng) -> (state, measurements), state donated
  features_fn: Callable  # jitted (state, images) -> features
  spatial_fn: Callable | None  # jitted (state, images) -> location features, if the method has them


def _jit_with_constants(fn, constants, in_shardings, out_shardings, **kwargs) -> Callable:
  """`fn` jitted; a method's constants are its last argument, bound here (never a jit constant)."""
  if constants is None:
    return jax.jit(fn, in_shardings=in_shardings, out_shardings=out_shardings, **kwargs)
  repl = in_shardings[0]
  jitted = jax.jit(fn, in_shardings=(*in_shardings, repl), out_shardings=out_shardings, **kwargs)
  return lambda *args: jitted(*args, constants)


def resolve_recipes(config):
  """`config` with every `recipe:<spec>` of the method's RECIPE_FIELDS replaced by the folder of
  that run (trained once, `resolve_init_from`); `init_from` itself is resolved at init."""
  fields = methods.recipe_fields(config)
  if not any(config_blocks.get_dotted(config, key).startswith(config_blocks.RECIPE) for key in fields):
    return config
  config = ml_collections.ConfigDict(config.to_dict())
  for key in fields:
    parent, _, leaf = key.rpartition(".")
    section = config_blocks.get_dotted(config, parent) if parent else config
    section[leaf] = resolve_init_from(section[leaf], config.data.root, print)
  return config


def prepare(config) -> Prepared:
  config = resolve_recipes(config)
  data = load_data(config)
  config, epochs = durations.resolve(config, len(data.train))
  mesh = sharding.data_mesh()
  repl, batch_sharding = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  made: list[Update] = []
  make_one = update.factory(config, epochs.total_steps)

  def make_update(trainable: str = ALL) -> Update:
    made.append(make_one(trainable))
    return made[-1]

  method = methods.build(config, data.num_classes, make_update)
  if len(made) != 1:
    raise ConfigError(f"method {config.method!r} must build exactly one update step "
                      f"(make_update), built {len(made)}")
  options = pipeline.ImageOptions.from_config(config.data)
  init_rng, _ = jax.random.split(jax.random.key(config.seed))
  sample = jnp.zeros((1, options.height, options.width, 3), jnp.float32)
  abstract_state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl),
                                jax.eval_shape(method.init, init_rng, sample))
  load_weights = method.load_weights or (lambda state: state)
  fresh_state = lambda: load_weights(run_once.jit(method.init, out_shardings=repl)(init_rng, sample))
  # Read once, placed once; passed to every jitted hook, never part of the state.
  constants = jax.device_put(method.load_constants(), repl) if method.has_constants else None
  train_step = _jit_with_constants(method.train_step, constants, (repl, batch_sharding, repl),
                                   (repl, repl), donate_argnums=0)
  features_fn = _jit_with_constants(method.features, constants, (repl, batch_sharding), repl)
  spatial_fn = (_jit_with_constants(method.spatial_features, constants, (repl, batch_sharding), repl)
                if method.spatial_features else None)
  return Prepared(config, epochs, data, mesh, made[0], method, options, abstract_state,
                  fresh_state, constants, train_step, features_fn, spatial_fn)


WEIGHTS_SUFFIXES = (".pth", ".pt", ".tar", ".safetensors")  # `.pth.tar` ends in `.tar`


def _init_weights(init_from: str, state) -> tuple[tuple, list[str], list[str], str]:
  """The (params, batch_stats) `init_from` gives `state`, the names loaded and kept, and the source.

  A file is PyTorch weights (torchvision / FastReID / LUPerson MoCo names,
  `jreid.convert.load`), how real runs start from ImageNet or LUPerson(-NL)
  ResNets; a folder is another jreid run's checkpoints (a DINO run's teacher). Only names and shapes
  that fit are copied, so a classifier for other identities stays as initialised.
  """
  path = pathlib.Path(init_from).expanduser()
  if path.is_file() or path.suffix in WEIGHTS_SUFFIXES:
    variables, report = load_torch_weights(path, {"params": state.params,
                                                  "batch_stats": state.batch_stats})
    # Back onto the state's own tree types: both sides list dict leaves in sorted key order.
    params, stats = (jax.tree.unflatten(jax.tree.structure(old), jax.tree.leaves(new))
                     for old, new in ((state.params, variables["params"]),
                                      (state.batch_stats, variables.get("batch_stats", {}))))
    kept = report.missing + [name for name, _, _ in report.mismatched]
    return (params, stats), report.loaded, kept, f"{path} (PyTorch weights){resized_and_skipped(report)}"
  other, step = checkpoint.open_existing(init_from)
  try:
    raw = other.restore_raw(step)
  finally:
    other.close()
  report = LoadReport()
  # A run with a teacher (DINO) gives its teacher: the model it evaluates and releases.
  source_params = raw.get("teacher_params") or raw["params"]
  source_stats = raw.get("teacher_batch_stats") if "teacher_params" in raw else raw.get("batch_stats")
  params, loaded, kept = checkpoint.merge_matching(state.params, source_params, prefix="params",
                                                   report=report)
  stats, loaded_bs, kept_bs = checkpoint.merge_matching(
      state.batch_stats, source_stats or {}, prefix="batch_stats", report=report)
  if not loaded:
    raise CheckpointMismatchError(f"config.init_from={init_from}: no parameter of that "
                                  "checkpoint matches this model by name and shape")
  return ((params, stats), loaded + loaded_bs, kept + kept_bs,
          f"{other.directory / str(step)}{resized_and_skipped(report)}")


def resolve_init_from(init_from: str, data_root: str, log) -> str:
  """`recipe:configs/pretrain_synth.py[:arg]` names a pre-training run instead of its folder.

  The run (reading its data under `data_root`) is trained once into
  `data_root`/pretrained/<name>_<config hash>/, resumed there if it was
  interrupted, and its folder is returned; any other value is returned as it is.
  """
  if not init_from.startswith(config_blocks.RECIPE):
    return init_from
  recipe, folder = config_blocks.recipe_run(init_from, data_root)
  if not (folder / "results.json").is_file():
    log(f"pre-training {init_from[len(config_blocks.RECIPE):]} into {folder} (once per machine)")
    train_and_evaluate(recipe, folder)
  return str(folder)


def _initial_state(config, existing, run: Prepared, log):
  """Resume order: this workdir (`existing`: its checkpoints, or None), `config.resume`,
  `config.init_from` weights, scratch; also returns the step folder resumed from (or None)."""
  latest = existing.latest_step() if existing is not None else None
  if latest is not None:
    state, data_state = existing.restore(latest, run.abstract_state)
    log(f"resumed from {existing.step_folder(latest)}")
    return state, data_state, existing.step_folder(latest)
  if config.resume:
    other, step = checkpoint.open_existing(config.resume)
    try:
      state, data_state = other.restore(step, run.abstract_state)
    finally:
      other.close()
    log(f"resumed from {other.step_folder(step)} (config.resume)")
    return state, data_state, other.step_folder(step)
  state = run.fresh_state()
  if config.init_from:
    init_from = resolve_init_from(config.init_from, config.data.root, log)
    weights, loaded, kept, source = _init_weights(init_from, state)
    fresh = run.method.fresh_params
    if fresh:
      weights = (partition.merge(weights[0], partition.select(state.params, fresh)), weights[1])
      kept = kept + [f"params/{name} (fresh: {fresh})" for name in partition.paths(
          partition.select(state.params, fresh))]
    params, stats = jax.device_put(weights, jax.tree.leaves(state.params)[0].sharding)
    state = state.replace(params=params, batch_stats=stats,
                          opt_state=jax.jit(run.update.init)(params))
    if run.method.after_init_from:
      state = run.method.after_init_from(state)
    log(f"initialised {len(loaded)} arrays from {source}; "
        f"{len(kept)} left as initialised: {kept[:5]}")
  return state, {}, None


def train_and_evaluate(config, workdir: str | pathlib.Path) -> dict:
  """Trains `config.method` and evaluates it; returns the final results (also in results.json)."""
  return train(config, workdir).results


@dataclasses.dataclass
class Finished:
  """A finished run: its final results and what a protocol needs to evaluate it further."""
  results: dict
  run: Prepared
  state: object


@dataclasses.dataclass
class EpochContext:
  """What `on_epoch_start` may use besides the state (see `jreid.methods.base`)."""
  records: list[Record]      # the run's labelled training records (data.train, relabelled)
  epochs: durations.Epochs   # epoch boundaries in steps
  seed: int
  log: Callable[[str], None]
  _extract: Callable

  def extract(self, state, records: list[Record]) -> np.ndarray:
    """(N, D) features of `records` with `state`, in order, as evaluation extracts them."""
    return self._extract(state, records)


def _records_to_json(records: list[Record] | None):
  return None if records is None else [[r.path, r.pid, r.camid, r.domain] for r in records]


def _records_from_json(rows) -> list[Record] | None:
  return None if rows is None else [Record(path, pid, camid, domain) for path, pid, camid, domain in rows]


def _epoch_seed(seed: int, epoch: int) -> int:
  """A distinct pipeline seed per epoch, fixed by the config seed."""
  return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def train(config, workdir: str | pathlib.Path, *, on_start: Callable[[], None] | None = None) -> Finished:
  """`train_and_evaluate`, keeping the final state: the lifelong protocol's one step per domain.

  Nothing is written to `workdir` until the run is known to start: its data
  loaded, its model built and its checkpoint (if any) restored and found to
  fit. `on_start` (a protocol's own first write) is called at that moment.
  """
  workdir = paths.check_output_folder(workdir, "workdir")
  sharding.maybe_initialize_distributed(config.distributed)
  # Training only: a finished run's tools (jreid.load) may open it on other devices.
  sharding.check_divisible({"train.batch_size": config.train.batch_size,
                            "eval.batch_size": config.eval.batch_size})
  is_main = jax.process_index() == 0
  log = (lambda text: print(text, flush=True)) if is_main else (lambda text: None)

  run = prepare(config)
  saved_config = config
  config, epochs = run.config, run.epochs
  post = PostProcessing.from_config(config.eval)
  for name, split in run.data.tests.items():  # a test set that cannot be scored: before training
    check_split(split, post, name=name)
  data, mesh, method, options = run.data, run.mesh, run.method, run.options
  log(f"train: {len(data.train)} images, {data.num_classes} identities; test sets: "
      + ", ".join(f"{k} ({len(v.query)} query, {len(v.gallery)} gallery)" for k, v in data.tests.items()))
  total_steps = epochs.total_steps
  _, train_rng = jax.random.split(jax.random.key(config.seed))
  checkpoints = workdir / checkpoint.CHECKPOINT_SUBDIR
  existing = checkpoint.Checkpointer(checkpoints, read_only=True) if checkpoints.is_dir() else None
  try:
    state, data_state, source = _initial_state(config, existing, run, log)
  finally:
    if existing is not None:
      existing.close()
  if data_state and "iterator" not in data_state:  # written before epoch records were saved
    data_state = {"iterator": data_state}
  start_step = int(jax.device_get(state.step))

  # Identity-balanced labelled batches, unless the method reads other batches (see jreid.methods.base).
  make_train_dataset = method.train_dataset or pipeline.train_dataset

  def dataset(records, num_steps: int, seed: int):
    return make_train_dataset(
        records, options=options, batch_size=config.train.batch_size,
        num_instances=config.data.num_instances, num_steps=num_steps, seed=seed,
        host=jax.process_index(), num_hosts=jax.process_count(),
        num_threads=config.data.num_threads, workers=config.data.workers)

  step_fn, features_fn = run.train_step, run.features_fn

  def evaluate(step: int, pictures: bool = False) -> dict:
    report = lambda name: (ReportOptions(workdir / "visualize" / name)
                           if pictures and is_main else None)
    with paths.writing(workdir / "visualize", "the pictures in", "the checkpoints are intact"):
      results = {name: evaluate_split(features_fn, state, split, mesh=mesh, options=options,
                                      batch_size=config.eval.batch_size, metric=config.eval.metric,
                                      report=report(name), post=post, spatial_fn=run.spatial_fn,
                                      name=name)
                 for name, split in data.tests.items()}
    for name, numbers in results.items():
      log(f"eval step {step} {name}: mAP {numbers['mAP']:.2f} rank-1 {numbers['rank1']:.2f} "
          f"rank-5 {numbers['rank5']:.2f} mINP {numbers['mINP']:.2f} (percent)")
    if is_main:
      evals_log.append({"step": step, **results})
    return results

  # Without an epoch hook one pipeline covers the run (its stream does not restart at epochs);
  # with one, every epoch has its own, over that epoch's records.
  hook = method.on_epoch_start
  records = _records_from_json(data_state.get("records"))  # set once a hook returned records
  iterator = None
  if hook is None:
    iterator = iter(dataset(data.train, total_steps, config.seed))
    if data_state:
      checkpoint.set_iterator_state(iterator, data_state["iterator"], source)

  # The run starts: from here on it writes to its workdir.
  with paths.writing(workdir, "the workdir"):
    workdir.mkdir(parents=True, exist_ok=True)
  if on_start is not None:
    on_start()
  if is_main:
    reporting.write_json_atomic(workdir / "config.json", json.loads(saved_config.to_json()))
  ckpt = checkpoint.Checkpointer(checkpoints, keep=config.train.keep_checkpoints)
  saver = SoundSaver(ckpt)
  metrics_log = reporting.JsonLines(workdir / "metrics.jsonl")
  evals_log = reporting.JsonLines(workdir / "evals.jsonl")
  if is_main:
    metrics_log.rewind(start_step)
    evals_log.rewind(start_step)

  if config.eval.before_training and start_step == 0:
    evaluate(0)

  progress = reporting.Progress(total_steps, start_step, config.train.batch_size)
  pending: list[tuple[int, dict]] = []

  def check_pending() -> list[tuple[int, dict]]:
    """The measurements since the last call; the first non-finite loss stops the run."""
    fetched = jax.device_get(pending)
    pending.clear()
    for step, measurements in fetched:
      if not math.isfinite(float(measurements["loss"])):
        saver.refuse(step)
    return fetched

  context = EpochContext(records=data.train, epochs=epochs, seed=config.seed, log=log,
                         _extract=lambda st, recs: extract_features(
                             features_fn, st, recs, mesh=mesh, options=options,
                             batch_size=config.eval.batch_size))

  log(f"training steps {start_step}..{total_steps} ({epochs.count} epochs of "
      f"{epochs.images / epochs.batch_size:.1f} steps) on {jax.device_count()} device(s), "
      f"global batch {config.train.batch_size}")
  step = start_step
  for epoch in range(epochs.of_step(start_step), epochs.count):
    first, end = epochs.span(epoch)
    if hook is not None:
      if step == first:  # a fresh epoch (a resumed one already ran its hook)
        state, new_records = hook(state, epoch, context)
        records = list(new_records) if new_records is not None else records
        log(f"epoch {epoch + 1}/{epochs.count}: steps {first + 1}..{end}, "
            f"{len(records if records is not None else data.train)} training records")
      iterator = iter(dataset(records if records is not None else data.train, end - first,
                              _epoch_seed(config.seed, epoch)))
      if step > first:
        checkpoint.set_iterator_state(iterator, data_state["iterator"], source)
    for step in range(step + 1, end + 1):
      batch = sharding.global_batch(next(iterator), mesh)
      state, measurements = step_fn(state, batch, jax.random.fold_in(train_rng, step - 1))
      pending.append((step, measurements))
      last = step == total_steps
      if step % config.train.log_every == 0 or last or saver.waiting:
        fetched = check_pending()  # a waiting snapshot is saved once this step's loss is finite
        saver.confirm()
        if step % config.train.log_every == 0 or last:
          _, latest = fetched[-1]
          entry = {"step": step, "loss": float(latest["loss"]),
                   **{k: float(v) for k, v in sorted(latest.items()) if k != "loss"}}
          entry["img_per_s"] = progress.throughput(step)
          log(progress.line(step, {k: v for k, v in entry.items() if k != "img_per_s"},
                            entry["img_per_s"]))
          if is_main:
            metrics_log.append(entry)
      if step % config.train.checkpoint_every == 0 or last:
        check_pending()
        saver.offer(step, state, {"iterator": iterator.get_state(),
                                  "records": _records_to_json(records)})
      if config.eval.every and step % config.eval.every == 0 and not last:
        evaluate(step)

  # The final state has no next loss: its evaluation (finite features) vouches for it instead.
  try:
    results = evaluate(total_steps, pictures=config.eval.visualize)
  except EvaluationError as err:  # its labels were checked before training: the features are not finite
    saver.refuse_final(err)
  saver.confirm()
  ckpt.wait()
  if is_main:
    reporting.write_json_atomic(workdir / "results.json", results)
  ckpt.close()
  return Finished(results, run, state)
