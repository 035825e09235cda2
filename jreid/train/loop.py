"""The one training loop every method shares.

It owns: data loading, the device mesh, jit with donated state, the optimiser,
checkpoints (resume order: this workdir, then `config.resume`, then
`config.init_from`, then scratch), the non-finite-loss guard, progress lines,
`metrics.jsonl`, evaluation and `results.json`. A method supplies only its
state, its pure step and its feature function (see `jreid.methods`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pathlib
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jreid import config_blocks, methods
from jreid.convert.load import LoadReport, load_torch_weights, resized_and_skipped
from jreid.data import datasets, pipeline
from jreid.data.records import Split, combine, relabel
from jreid.errors import CheckpointMismatchError, NonFiniteLossError
from jreid.evaluation.retrieval import PostProcessing, ReportOptions, evaluate_split
from jreid.train import checkpoint, optim, partition, reporting, sharding


@dataclasses.dataclass
class RunData:
  train: list
  num_classes: int
  tests: dict[str, Split]


def load_data(config) -> RunData:
  """Parses each named dataset once, even when it is both a training and a test set."""
  names = lambda text: [n.strip() for n in text.split(",") if n.strip()]
  train_names, test_names = names(config.data.train), names(config.data.test)
  splits = {name: datasets.get(name, config.data.root)
            for name in dict.fromkeys(train_names + test_names)}
  train = relabel(combine([splits[name] for name in train_names]).train)
  return RunData(train=train, num_classes=len({r.pid for r in train}),
                 tests={name: splits[name] for name in test_names})


@dataclasses.dataclass
class Prepared:
  """Everything a run needs before its first step; also what tools use to rebuild a model."""
  data: RunData
  mesh: jax.sharding.Mesh
  tx: optax.GradientTransformation
  method: object
  options: pipeline.ImageOptions
  abstract_state: object  # shapes, dtypes and shardings of the train state
  fresh_state: Callable[[], object]  # a newly initialised state (seeded by config.seed)


def prepare(config) -> Prepared:
  data = load_data(config)
  mesh = sharding.data_mesh()
  repl = sharding.replicated(mesh)
  tx, schedule = optim.build(config.optim, config.train.steps)
  method = methods.build(config, data.num_classes, tx, schedule)
  tx = getattr(method, "tx", tx)  # a method may restrict the optimiser (DASA: its trainable leaves)
  options = pipeline.ImageOptions.from_config(config.data)
  init_rng, _ = jax.random.split(jax.random.key(config.seed))
  sample = jnp.zeros((1, options.height, options.width, 3), jnp.float32)
  abstract_state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl),
                                jax.eval_shape(method.init, init_rng, sample))
  load_weights = getattr(method, "load_weights", lambda state: state)  # see jreid.methods
  fresh_state = lambda: load_weights(jax.jit(method.init, out_shardings=repl)(init_rng, sample))
  return Prepared(data, mesh, tx, method, options, abstract_state, fresh_state)


WEIGHTS_SUFFIXES = (".pth", ".pt", ".tar", ".safetensors")  # `.pth.tar` ends in `.tar`


def _init_weights(init_from: str, state) -> tuple[tuple, list[str], list[str], str]:
  """The (params, batch_stats) `init_from` gives `state`, the names loaded and kept, and the source.

  A file is PyTorch weights (torchvision / FastReID / LUPerson MoCo names,
  `jreid.convert.load`), how real runs start from ImageNet or LUPerson(-NL)
  ResNets; a folder is another jreid run's checkpoints. Only names and shapes
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
  raw = other.restore_raw(step)
  report = LoadReport()
  params, loaded, kept = checkpoint.merge_matching(state.params, raw["params"], prefix="params",
                                                   report=report)
  stats, loaded_bs, kept_bs = checkpoint.merge_matching(
      state.batch_stats, raw.get("batch_stats", {}), prefix="batch_stats", report=report)
  if not loaded:
    raise CheckpointMismatchError(f"config.init_from={init_from}: no parameter of that "
                                  "checkpoint matches this model by name and shape")
  return ((params, stats), loaded + loaded_bs, kept + kept_bs,
          f"{other.directory / str(step)}{resized_and_skipped(report)}")


RECIPE = "recipe:"


def resolve_init_from(init_from: str, data_root: str, log) -> str:
  """`recipe:configs/pretrain_synth.py[:arg]` names a pre-training run instead of its folder.

  The run (reading its data under `data_root`) is trained once into
  `data_root`/pretrained/<name>_<config hash>/, resumed there if it was
  interrupted, and its folder is returned; any other value is returned as it is.
  """
  if not init_from.startswith(RECIPE):
    return init_from
  recipe = config_blocks.load_config(init_from[len(RECIPE):])
  recipe.data.root = data_root
  digest = hashlib.sha1(recipe.to_json(sort_keys=True).encode()).hexdigest()[:10]
  name = pathlib.Path(init_from[len(RECIPE):].partition(":")[0]).stem
  folder = pathlib.Path(data_root).expanduser() / "pretrained" / f"{name}_{digest}"
  if not (folder / "results.json").is_file():
    log(f"pre-training {init_from[len(RECIPE):]} into {folder} (once per machine)")
    train_and_evaluate(recipe, folder)
  return str(folder)


def _initial_state(config, ckpt, run: Prepared, log):
  """Resume order: this workdir, `config.resume`, `config.init_from` weights, scratch."""
  latest = ckpt.latest_step()
  if latest is not None:
    state, data_state = ckpt.restore(latest, run.abstract_state)
    log(f"resumed from {ckpt.directory / str(latest)}")
    return state, data_state
  if config.resume:
    other, step = checkpoint.open_existing(config.resume)
    state, data_state = other.restore(step, run.abstract_state)
    log(f"resumed from {other.directory / str(step)} (config.resume)")
    return state, data_state
  state = run.fresh_state()
  if config.init_from:
    init_from = resolve_init_from(config.init_from, config.data.root, log)
    weights, loaded, kept, source = _init_weights(init_from, state)
    fresh = getattr(run.method, "fresh_params", "")  # see jreid.methods
    if fresh:
      weights = (partition.merge(weights[0], partition.select(state.params, fresh)), weights[1])
      kept = kept + [f"params/{name} (fresh: {fresh})" for name in partition.paths(
          partition.select(state.params, fresh))]
    params, stats = jax.device_put(weights, jax.tree.leaves(state.params)[0].sharding)
    state = state.replace(params=params, batch_stats=stats, opt_state=jax.jit(run.tx.init)(params))
    log(f"initialised {len(loaded)} arrays from {source}; "
        f"{len(kept)} left as initialised: {kept[:5]}")
  return state, {}


def train_and_evaluate(config, workdir: str | pathlib.Path) -> dict:
  """Trains `config.method` and evaluates it; returns the final results (also in results.json)."""
  return train(config, workdir).results


@dataclasses.dataclass
class Finished:
  """A finished run: its final results and what a protocol needs to evaluate it further."""
  results: dict
  run: Prepared
  state: object


def train(config, workdir: str | pathlib.Path) -> Finished:
  """`train_and_evaluate`, keeping the final state: the lifelong protocol's one step per domain."""
  workdir = pathlib.Path(workdir).expanduser()
  workdir.mkdir(parents=True, exist_ok=True)
  sharding.maybe_initialize_distributed(config.distributed)
  is_main = jax.process_index() == 0
  log = (lambda text: print(text, flush=True)) if is_main else (lambda text: None)
  if is_main:
    reporting.write_json_atomic(workdir / "config.json", json.loads(config.to_json()))

  run = prepare(config)
  data, mesh, method, options = run.data, run.mesh, run.method, run.options
  log(f"train: {len(data.train)} images, {data.num_classes} identities; test sets: "
      + ", ".join(f"{k} ({len(v.query)} query, {len(v.gallery)} gallery)" for k, v in data.tests.items()))
  repl, batch_sharding = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  total_steps = config.train.steps
  _, train_rng = jax.random.split(jax.random.key(config.seed))
  ckpt = checkpoint.Checkpointer(workdir / checkpoint.CHECKPOINT_SUBDIR,
                                 keep=config.train.keep_checkpoints)
  state, data_state = _initial_state(config, ckpt, run, log)
  start_step = int(jax.device_get(state.step))

  metrics_log = reporting.JsonLines(workdir / "metrics.jsonl")
  evals_log = reporting.JsonLines(workdir / "evals.jsonl")
  if is_main:
    metrics_log.rewind(start_step)
    evals_log.rewind(start_step)

  # Identity-balanced labelled batches, unless the method reads other batches (see jreid.methods).
  make_train_dataset = getattr(method, "train_dataset", pipeline.train_dataset)
  train_data = make_train_dataset(
      data.train, options=options, batch_size=config.train.batch_size,
      num_instances=config.data.num_instances, num_steps=total_steps, seed=config.seed,
      host=jax.process_index(), num_hosts=jax.process_count(),
      num_threads=config.data.num_threads, workers=config.data.workers)
  iterator = iter(train_data)
  if data_state:
    iterator.set_state(data_state)

  step_fn = jax.jit(method.train_step, in_shardings=(repl, batch_sharding, repl),
                    out_shardings=(repl, repl), donate_argnums=0)
  features_fn = jax.jit(method.features, in_shardings=(repl, batch_sharding), out_shardings=repl)

  post = PostProcessing.from_config(config.eval)
  spatial_fn = (jax.jit(method.spatial_features, in_shardings=(repl, batch_sharding),
                        out_shardings=repl) if hasattr(method, "spatial_features") else None)

  def evaluate(step: int, pictures: bool = False) -> dict:
    report = lambda name: (ReportOptions(workdir / "visualize" / name)
                           if pictures and is_main else None)
    results = {name: evaluate_split(features_fn, state, split, mesh=mesh, options=options,
                                    batch_size=config.eval.batch_size, metric=config.eval.metric,
                                    report=report(name), post=post, spatial_fn=spatial_fn)
               for name, split in data.tests.items()}
    for name, numbers in results.items():
      log(f"eval step {step} {name}: mAP {numbers['mAP']:.2f} rank-1 {numbers['rank1']:.2f} "
          f"rank-5 {numbers['rank5']:.2f} mINP {numbers['mINP']:.2f} (percent)")
    if is_main:
      evals_log.append({"step": step, **results})
    return results

  if config.eval.before_training and start_step == 0:
    evaluate(0)

  progress = reporting.Progress(total_steps, start_step, config.train.batch_size)
  pending: list[tuple[int, dict]] = []

  def check_pending() -> list[tuple[int, dict]]:
    fetched = jax.device_get(pending)
    pending.clear()
    for step, measurements in fetched:
      if not math.isfinite(float(measurements["loss"])):
        ckpt.wait()
        raise NonFiniteLossError(
            f"non-finite loss at step {step}; training stopped, last good checkpoint: "
            f"{ckpt.latest_step()} in {ckpt.directory}")
    return fetched

  log(f"training steps {start_step}..{total_steps} on {jax.device_count()} device(s), "
      f"global batch {config.train.batch_size}")
  for step in range(start_step + 1, total_steps + 1):
    batch = sharding.global_batch(next(iterator), mesh)
    state, measurements = step_fn(state, batch, jax.random.fold_in(train_rng, step - 1))
    pending.append((step, measurements))
    last = step == total_steps
    if step % config.train.log_every == 0 or last:
      _, latest = check_pending()[-1]
      entry = {"step": step, "loss": float(latest["loss"]),
               **{k: float(v) for k, v in sorted(latest.items()) if k != "loss"}}
      entry["img_per_s"] = progress.throughput(step)
      log(progress.line(step, {k: v for k, v in entry.items() if k != "img_per_s"},
                        entry["img_per_s"]))
      if is_main:
        metrics_log.append(entry)
    if step % config.train.checkpoint_every == 0 or last:
      check_pending()
      ckpt.save(step, state, iterator.get_state())
    if config.eval.every and step % config.eval.every == 0 and not last:
      evaluate(step)
  ckpt.wait()

  results = evaluate(total_steps, pictures=config.eval.visualize)
  if is_main:
    reporting.write_json_atomic(workdir / "results.json", results)
  ckpt.close()
  return Finished(results, run, state)
