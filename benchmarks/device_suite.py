"""Everything worth measuring on an accelerator, in one command that fits a short device lease.

    python -m benchmarks.device_suite                # full: ResNet-50 256x128 batch 64, Market scale
    python -m benchmarks.device_suite --quick        # tiny sizes: ~5 min on a 2-core CPU (the tests run it)
    bash benchmarks/device_wheels.sh                 # here: the wheels the device machine lacks
    bash benchmarks/device_run.sh                    # there: install them, run the full suite

It runs on whatever backend JAX finds (GPU, TPU, CPU) and writes one JSON,
`benchmarks/results/device_<device kind>.json` (`device_<kind>_quick.json`
with `--quick`), after every part, so a lease that ends early still leaves
the parts that finished. Parts, each in its own process with its own time
budget (a part past its budget is killed and reported as `timed_out`; the
later parts still run):

* `probe`: backend, device kind and count, memory, package versions;
* `train_jreid_float32`, `train_jreid_bfloat16`: the BoT train step
  (`configs/baseline.py`, ResNet-50, `conv_impl` auto) on random data,
  compile + first step and the median of the timed steps, images/s, peak
  device memory; `train_jreid_float32_warm_cache` repeats the float32 part
  with the compile cache the first one filled (what a second run pays);
* `train_torch_eager`, `train_torch_compile_float32`, `..._bfloat16`: the
  same model and step in PyTorch (`benchmarks/torch_resnet.py`) on the same
  device (CUDA when torch sees one, else CPU);
* `train_vit_jreid`: the supervised ViT-B/16 step (`configs/vit.py:no_ics`
  with ViT-B widths, 256x128, batch 64) in float32 and bfloat16, the
  attention through `jax.nn.dot_product_attention` (cuDNN's fused kernel
  where it applies);
* `train_dino_jreid`: one DINO step (`configs/transreid_ssl.py`: ViT-S/16
  ICS, 2 global 256x128 + 8 local 128x64 crops, out_dim 65536) at the
  authors' 64 images per GPU (8 processes of main_dino.py's default),
  bfloat16 then float32; images/s counts source images, crops/s the crops;
* `train_dcac_jreid`: one DCAC step (`benchmarks/dcac_step.py`: CLIP
  ViT-B/16 + SD-1.5's UNet with LoRA, bfloat16, batch 64; the paper's Tab. 6:
  578 ms on an RTX A6000);
* `train_multiprocess`: data-parallel training with one process per local
  GPU (`launch/local_multiprocess.sh`, `benchmarks/multiprocess_step.py`)
  against one process over the same GPUs: images/s and the largest loss
  difference (quick: 2 CPU processes of 1 device each, the smoke run);
* `onnx_runtime`: the BoT model exported to ONNX (`benchmarks/onnx_speed.py`),
  onnxruntime's images/s (CUDA provider with onnxruntime-gpu, else the CPU)
  next to jreid's jitted features, and their largest difference;
* `evaluation`, `rerank`: Market-1501-scale cosine distances and k-reciprocal
  re-ranking (JAX device; `evaluate_rank` and the sparse re-ranking work in numpy);
* `input_pipeline`: the grain pipeline (decode, resize to 256x128, flip, pad-crop,
  erase, normalise) per thread/worker setting, next to the float32 step's needs.

Parts run in `BUDGETS`' order; a two-dtype part killed at its budget keeps its rows (`partial`).

The JAX parts share one fresh persistent compilation cache under the
scratch folder. No two parts run the same program (the state's init is the
exception, and it is not timed), so each `first_call_s` is a cold compile,
except in `train_jreid_float32_warm_cache`, which reads the float32 step back.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.common import REPO, load_config
from benchmarks.device_table import table

# Each part's budget in seconds (full mode; --quick uses QUICK_BUDGET(S)), in run order: a suite
# cut short by TOTAL_BUDGET loses the last parts, so jreid's steps go before the two torch.compile
# baselines (inductor's compile is the slowest). A budget is a cap, not a reservation. Estimated H200
# walls (no GPU run yet; first calls are mostly XLA compile): probe ~10 s, the ResNet-50 steps ~60
# each, warm-cache ~20, torch eager ~30, evaluation + rerank + pipeline ~80, ViT-B ~90, DINO ~120-150,
# DCAC ~90 -> ~560 s: past the 510 s, so the torch.compile parts run in a second call
# (`device_run.sh --parts=...`). 510 s keeps device_run.sh's call at 540 s (install and start-up in
# the other 30), under the 600 s a call may run, leaving ~4 of 15 device minutes for a rerun.
BUDGETS = {
    "probe": 60,
    "train_jreid_float32": 150,
    "train_jreid_bfloat16": 150,
    "train_jreid_float32_warm_cache": 90,
    "train_torch_eager": 90,
    "evaluation": 90,
    "rerank": 120,
    "input_pipeline": 90,
    "train_vit_jreid": 150,
    "train_dino_jreid": 150,  # bfloat16 lands first; float32 if the cap allows (`partial` otherwise)
    "train_dcac_jreid": 150,  # SD-1.5 UNet + CLIP ViT-B/16, LoRA, bf16, batch 64 (DCAC Tab. 6)
    "train_multiprocess": 150,  # one process per local GPU vs one process (SynthPerson small)
    "onnx_runtime": 90,  # the BoT ResNet-50 exported to ONNX, onnxruntime vs jreid's features
    "train_torch_compile_float32": 180,
    "train_torch_compile_bfloat16": 180,
}
# --quick walls alone on the 2-core CPU: 2-24 s, DINO/DCAC/multi-process 21-64 s; under the test
# suite's load (2 xdist workers on 2 cores) 2-3x that: train_multiprocess passed 120 s in CI of 2f372a0.
QUICK_BUDGET = 120
QUICK_BUDGETS = {"train_dino_jreid": 180, "train_dcac_jreid": 180, "train_multiprocess": 240}
TOTAL_BUDGET = 510  # the whole full suite: 8.5 min, inside the 9-min device call of device_run.sh
LUPERSON_IMAGES = 4_180_243  # the pool DINO's epoch-based schedules resolve against (luperson.py)
PART_ARGS = {"train_jreid_float32": ("jreid", "float32"), "train_jreid_bfloat16": ("jreid", "bfloat16"),
             "train_jreid_float32_warm_cache": ("jreid", "float32"),
             "train_torch_eager": ("torch", "float32,bfloat16"),
             "train_torch_compile_float32": ("torch_compile", "float32"),
             "train_torch_compile_bfloat16": ("torch_compile", "bfloat16"),
             "train_vit_jreid": ("jreid", "float32,bfloat16", "vit")}

# (train config and its overrides, classes, steps; evaluation sizes; rerank sizes; pipeline sizes)
FULL = dict(config="configs/baseline.py", model={}, height=256, width=128, batch=64, classes=751,
            steps=20, eval=(3368, 15913, 2048, 750), rerank=(3368, 15913, 2048),
            pipeline=dict(images=1024, size=(128, 64), batches=30,
                          settings=((1, 0), (8, 0), (16, 0), (2, 8), (2, 15))),
            torch_compile_backend="inductor",
            vit=dict(config="configs/vit.py:no_ics", model=dict(name="vit_base", embed_dim=768,
                                                                num_heads=12)),
            # bfloat16 first: the authors pre-trained in fp16 mixed precision
            dino=dict(config="configs/transreid_ssl.py", batch=64, dtypes="bfloat16,float32"),
            dcac=dict(scale="sd15", variant="lora", dtype="bfloat16"))
QUICK = dict(config="configs/baseline.py", model=dict(name="resnet18", width=8), height=64,
             width=32, batch=16, classes=16, steps=2, eval=(200, 1000, 64, 50), rerank=(100, 500, 64),
             pipeline=dict(images=64, size=(32, 16), batches=2, settings=((1, 0), (2, 0))),
             torch_compile_backend="eager",  # dynamo's capture without inductor's 30-40 s C++ build
             vit=dict(config="configs/vit.py:no_ics", model=dict(embed_dim=32, depth=2, num_heads=2)),
             # ViT width 16, 32x16 + 2 16x8; one dtype: each compiles cold in ~35 s on this CPU
            dino=dict(config="configs/transreid_ssl.py:smoke", batch=16, dtypes="float32"),
            dcac=dict(scale="tiny", variant="lora", dtype="float32"))


# ---------------------------------------------------------------- the parts (child processes)

def part_probe(sizes, scratch) -> dict:
  import jax
  device = jax.devices()[0]
  stats = device.memory_stats() or {}
  versions = {}
  for name in ("jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "grain", "numpy", "torch"):
    try:
      versions[name] = __import__(name, fromlist=["_"]).__version__
    except Exception as err:  # a missing or broken package is a fact to report, not a failure
      versions[name] = f"unavailable: {type(err).__name__}"
  torch_cuda = None
  try:
    import torch
    torch_cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
  except ImportError:
    pass
  return {"backend": jax.default_backend(), "device_kind": device.device_kind,
          "device_count": jax.device_count(), "memory_bytes": stats.get("bytes_limit"),
          "torch_cuda_device": torch_cuda, "cpu_count": os.cpu_count(), "versions": versions}


def _bot_config(sizes):
  config = load_config(sizes["config"])
  config.model.backbone.update(sizes["model"])
  config.data.update(height=sizes["height"], width=sizes["width"])
  return config


def _random_batch(sizes):
  rng = np.random.default_rng(0)
  images = rng.normal(size=(sizes["batch"], sizes["height"], sizes["width"], 3)).astype(np.float32)
  labels = (np.repeat(np.arange(sizes["batch"] // 4), 4) % sizes["classes"]).astype(np.int32)
  return images, labels


def _timing(first, median, batch, peak):
  return {"first_call_s": first, "warm_median_step_s": median, "images_per_s": batch / median,
          "peak_device_bytes": peak}


def _progress(result: dict) -> None:
  """Print `result` as the part's latest line: `launch` keeps it if the part is killed later."""
  print(json.dumps(result), flush=True)


def part_train(sizes, scratch, framework, dtypes, model="bot") -> dict:
  from benchmarks import train_step
  if model == "vit":  # the same sizes, the ViT config and backbone
    sizes = {**sizes, **sizes["vit"]}
  config = _bot_config(sizes)
  images, labels = _random_batch(sizes)
  backbone = config.model.backbone
  width = backbone.get("width", backbone.get("embed_dim"))
  rows = {}
  result = {"model": f"{backbone.name} width {width} {'ViT' if model == 'vit' else 'BoT'}",
            "image": [sizes["height"], sizes["width"]], "batch": sizes["batch"],
            "steps_timed": sizes["steps"], "dtypes": rows}
  for dtype in dtypes.split(","):
    if framework == "jreid":
      import jax
      config.train.compute_dtype = dtype
      first, median = train_step.time_jreid(config, images, labels, sizes["classes"], sizes["steps"])
      stats = jax.devices()[0].memory_stats() or {}
      rows[dtype] = {**_timing(first, median, sizes["batch"], stats.get("peak_bytes_in_use")),
                     "conv_impl": config.model.backbone.get("conv_impl"),
                     "device": jax.devices()[0].device_kind}
    else:
      import torch
      device = "cuda" if torch.cuda.is_available() else "cpu"
      backend = sizes["torch_compile_backend"] if framework == "torch_compile" else None
      (first, median), version, _, peak = train_step.time_torch(
          config, images, labels, sizes["classes"], sizes["steps"], device=device, dtype=dtype,
          compile=backend)
      rows[dtype] = {**_timing(first, median, sizes["batch"], peak), "torch": version,
                     "compile_backend": backend,
                     "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu"}
    _progress(result)
  return result


def _dino_config(sizes):
  """TransReID-SSL's DINO run at the part's batch, its epoch durations in steps over LUPerson (the
  schedules' values do not change the step's program; the last layer's freeze being on does)."""
  from jreid.train import durations
  config = load_config(sizes["dino"]["config"])
  config.train.batch_size = sizes["dino"]["batch"]
  config, _ = durations.resolve(config, LUPERSON_IMAGES)
  return config


def _multicrop_batch(spec, batch: int) -> dict:
  """Random views shaped as `jreid.data.multicrop` batches them (what DINO's train_step reads)."""
  rng = np.random.default_rng(0)
  (height, width), (local_height, local_width) = spec.global_size, spec.local_size
  return {"global": rng.standard_normal((batch, spec.num_global, height, width, 3), np.float32),
          "local": rng.standard_normal((batch, spec.num_local, local_height, local_width, 3),
                                       np.float32)}


def part_train_dino(sizes, scratch) -> dict:
  import jax

  from benchmarks import train_step
  from jreid.methods.dino import crop_spec
  config = _dino_config(sizes)
  spec, batch = crop_spec(config), sizes["dino"]["batch"]
  views = _multicrop_batch(spec, batch)
  crops = spec.num_global + spec.num_local
  backbone, head = config.model.backbone, config.dino
  rows = {}
  result = {"model": f"{backbone.name} width {backbone.embed_dim} depth {backbone.depth} DINO "
                     f"out_dim {head.out_dim}",
            "crops": {"global": [spec.num_global, *spec.global_size],
                      "local": [spec.num_local, *spec.local_size]},
            "batch": batch, "crops_per_image": crops, "steps_timed": sizes["steps"], "dtypes": rows}
  for dtype in sizes["dino"]["dtypes"].split(","):
    config.train.compute_dtype = dtype
    first, median = train_step.time_method(config, views, (*spec.global_size, 3), 0, sizes["steps"])
    stats = jax.devices()[0].memory_stats() or {}  # the process's peak so far (float32's: both)
    rows[dtype] = {**_timing(first, median, batch, stats.get("peak_bytes_in_use")),
                   "crops_per_s": batch * crops / median, "device": jax.devices()[0].device_kind}
    _progress(result)
  return result


def part_train_dcac(sizes, scratch) -> dict:
  from benchmarks import dcac_step
  return dcac_step.device_row(**sizes["dcac"], steps=sizes["steps"])


def part_train_multiprocess(sizes, scratch) -> dict:
  from benchmarks import multiprocess_step
  return multiprocess_step.device_row(quick=sizes is QUICK, scratch=scratch)


def part_onnx_runtime(sizes, scratch) -> dict:
  from benchmarks import onnx_speed
  return onnx_speed.measure(_bot_config(sizes), batch=sizes["batch"], scratch=scratch)


def _timed(fn, *args, **kwargs):
  start = time.perf_counter()
  result = fn(*args, **kwargs)
  return result, time.perf_counter() - start


def _features(rng, count, dim):
  return rng.standard_normal((count, dim), dtype=np.float32)


def part_evaluation(sizes, scratch) -> dict:
  from jreid.evaluation import compute_distance, evaluate_rank
  num_query, num_gallery, dim, ids = sizes["eval"]
  rng = np.random.default_rng(0)
  qf, gf = _features(rng, num_query, dim), _features(rng, num_gallery, dim)
  q_pids, g_pids = rng.integers(1, ids + 1, num_query), rng.integers(0, ids + 1, num_gallery)
  q_cams, g_cams = rng.integers(0, 6, num_query), rng.integers(0, 6, num_gallery)
  distmat, first = _timed(compute_distance, qf, gf, "cosine")
  warm = [_timed(compute_distance, qf, gf, "cosine")[1] for _ in range(3)]
  rank = [_timed(evaluate_rank, distmat, q_pids, g_pids, q_cams, g_cams)[1] for _ in range(3)]
  return {"shapes": [num_query, num_gallery, dim],
          "distance": {"where": "jax device", "first_call_s": first,
                       "warm_median_s": float(np.median(warm))},
          "evaluate_rank": {"where": "cpu (numpy)", "median_s": float(np.median(rank))}}


def part_rerank(sizes, scratch) -> dict:
  from jreid.evaluation import compute_distance, re_ranking
  num_query, num_gallery, dim = sizes["rerank"]
  rng = np.random.default_rng(1)
  qf, gf = _features(rng, num_query, dim), _features(rng, num_gallery, dim)
  blocks = [compute_distance(a, b, "euclidean") for a, b in ((qf, gf), (qf, qf), (gf, gf))]
  runs = []
  for _ in range(2):  # the first call compiles the neighbour search
    phases = {}
    final, seconds = _timed(re_ranking, *blocks, timings=phases)
    runs.append({"total_s": seconds, "phases_s": phases})
  return {"shapes": [num_query, num_gallery, dim], "k1": 20, "k2": 6, "lambda": 0.3,
          "where": "neighbour search on the jax device, k-reciprocal sets and Jaccard in numpy (cpu)",
          "first_call_s": runs[0]["total_s"], "warm_s": runs[1]["total_s"],
          "warm_phases_s": runs[1]["phases_s"], "finite": bool(np.isfinite(final).all())}


def write_person_images(folder: pathlib.Path, count: int, size: tuple[int, int]) -> list:
  """`count` JPEGs of a Market-like size (smooth colour fields with noise), 8 per identity."""
  from PIL import Image

  from jreid.data.records import Record
  rng = np.random.default_rng(0)
  folder.mkdir(parents=True, exist_ok=True)
  height, width = size
  ramp = np.linspace(0, 1, height)[:, None, None]
  records = []
  for index in range(count):
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    pixels = top * (1 - ramp) + bottom * ramp + rng.normal(0, 12, (height, width, 3))
    path = folder / f"{index // 8:04d}_c{index % 6 + 1}s1_{index:06d}_01.jpg"
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
    records.append(Record(str(path), index // 8, index % 6))
  return records


def part_input_pipeline(sizes, scratch) -> dict:
  from absl import flags

  from benchmarks.input_pipeline import measure
  flags.FLAGS.mark_as_parsed()  # grain's worker processes read absl flags
  setup = sizes["pipeline"]
  records = write_person_images(pathlib.Path(scratch) / "images", setup["images"], setup["size"])
  config = _bot_config(sizes)
  config.train.batch_size = sizes["batch"]
  rows = [{"threads": threads, "workers": workers,
           "images_per_s": measure(records, config, setup["batches"], threads, workers)}
          for threads, workers in setup["settings"]]
  return {"decoded": list(setup["size"]), "output": [sizes["height"], sizes["width"]],
          "batch": sizes["batch"], "cpu_count": os.cpu_count(), "settings": rows}


def run_part(name: str, sizes: dict, scratch: str) -> dict:
  if name == "probe":
    return part_probe(sizes, scratch)
  if name in PART_ARGS:
    return part_train(sizes, scratch, *PART_ARGS[name])
  return {"evaluation": part_evaluation, "rerank": part_rerank, "input_pipeline": part_input_pipeline,
          "train_dino_jreid": part_train_dino, "train_dcac_jreid": part_train_dcac,
          "train_multiprocess": part_train_multiprocess, "onnx_runtime": part_onnx_runtime}[name](
              sizes, scratch)


# ---------------------------------------------------------------- the driver (parent process)

def last_json(stdout) -> dict | None:
  """The last whole JSON line a part printed (a killed part's output is bytes, maybe cut mid-line)."""
  if isinstance(stdout, bytes):
    stdout = stdout.decode(errors="replace")
  for line in reversed((stdout or "").splitlines()):
    if line.startswith("{"):
      try:
        return json.loads(line)
      except json.JSONDecodeError:
        continue
  return None


def launch(name: str, args, scratch: pathlib.Path, budget: float) -> dict:
  """One part in a child process under `budget` seconds: its result, or why there is none (with
  the rows it printed before it was killed, if any, under `partial`)."""
  env = {**os.environ, "JREID_COMPILE_CACHE": str(scratch / "xla"), "PYTHONUNBUFFERED": "1"}
  command = [sys.executable, "-m", "benchmarks.device_suite", f"--part={name}",
             f"--scratch={scratch / name}"] + (["--quick"] if args.quick else [])
  start = time.perf_counter()
  try:
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=budget)
  except subprocess.TimeoutExpired as killed:
    partial = last_json(killed.stdout)
    return {"status": "timed_out", "budget_s": budget, "wall_s": time.perf_counter() - start,
            **({"partial": partial} if partial else {})}
  wall = time.perf_counter() - start
  result = last_json(done.stdout)
  if done.returncode != 0 or result is None:
    return {"status": "failed", "returncode": done.returncode, "budget_s": budget, "wall_s": wall,
            "stderr_tail": done.stderr[-2000:]}
  return {"status": "ok", "budget_s": budget, "wall_s": wall, **result}


def ratios(parts: dict) -> dict:
  """jreid images/s over PyTorch's, per dtype, and what the input pipeline can feed."""
  def rate(name, dtype):
    part = parts.get(name, {})
    return part.get("dtypes", {}).get(dtype, {}).get("images_per_s") if part.get("status") == "ok" else None

  out = {}
  for dtype in ("float32", "bfloat16"):
    jreid = rate(f"train_jreid_{dtype}", dtype)
    for label, name in (("eager", "train_torch_eager"), ("compile", f"train_torch_compile_{dtype}")):
      torch_rate = rate(name, dtype)
      out[f"jreid_over_torch_{label}_{dtype}"] = jreid / torch_rate if jreid and torch_rate else None
  pipeline, train = parts.get("input_pipeline", {}), rate("train_jreid_float32", "float32")
  if pipeline.get("status") == "ok" and train:
    best = max(row["images_per_s"] for row in pipeline["settings"])
    out["input_pipeline_best_over_train_float32"] = best / train
  return out


def default_out(device_kind: str, quick: bool) -> pathlib.Path:
  kind = re.sub(r"[^a-z0-9]+", "_", device_kind.lower()).strip("_") or "unknown"
  return REPO / "benchmarks" / "results" / f"device_{kind}{'_quick' if quick else ''}.json"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="tiny sizes, every part (2-core CPU: ~5 min)")
  parser.add_argument("--parts", default="", help=f"comma-separated subset of {list(BUDGETS)}")
  parser.add_argument("--budget", action="append", default=[],
                      help="PART=SECONDS: override one part's budget (repeatable)")
  parser.add_argument("--total_budget", type=float, default=TOTAL_BUDGET,
                      help="seconds for the whole suite; each part gets at most what is left")
  parser.add_argument("--out", default="", help="JSON path (default benchmarks/results/device_<kind>.json)")
  parser.add_argument("--part", default="", help=argparse.SUPPRESS)     # child: run one part
  parser.add_argument("--scratch", default="", help=argparse.SUPPRESS)  # child: its folder
  args = parser.parse_args(argv)
  sizes = QUICK if args.quick else FULL
  if args.part:
    from jreid import compile_cache
    compile_cache.enable()
    print(json.dumps(run_part(args.part, sizes, args.scratch)), flush=True)
    return

  names = [n for n in args.parts.split(",") if n] or list(BUDGETS)
  unknown = sorted(set(names) - set(BUDGETS))
  if unknown:
    parser.error(f"unknown parts {unknown}; known: {list(BUDGETS)}")
  budgets = {name: float(QUICK_BUDGETS.get(name, QUICK_BUDGET) if args.quick else BUDGETS[name])
             for name in names}
  for item in args.budget:
    name, _, seconds = item.partition("=")
    if name not in budgets:
      parser.error(f"--budget {item}: expected PART=SECONDS with PART one of {names}")
    budgets[name] = float(seconds)
  names = ["probe"] + [n for n in names if n != "probe"]  # the device is named first
  budgets.setdefault("probe", float(QUICK_BUDGET if args.quick else BUDGETS["probe"]))

  from jreid.core.reporting import write_json_atomic
  scratch = pathlib.Path(tempfile.mkdtemp(prefix="jreid_device_suite_"))
  result = {"benchmark": "device_suite", "quick": args.quick, "sizes": sizes,
            "total_budget_s": args.total_budget, "parts": {}, "ratios": {}}
  start, out = time.perf_counter(), pathlib.Path(args.out) if args.out else None
  try:
    for name in names:
      left = args.total_budget - (time.perf_counter() - start)
      if left <= 1:
        result["parts"][name] = {"status": "not_run", "budget_s": budgets[name], "wall_s": 0.0,
                                 "why": "the suite's total budget was spent"}
      else:
        result["parts"][name] = launch(name, args, scratch, min(budgets[name], left))
      print(f"[device_suite] {name}: {result['parts'][name]['status']} "
            f"({result['parts'][name]['wall_s']:.1f} s)", flush=True)
      probe = result["parts"]["probe"]
      out = out or default_out(probe.get("device_kind", "unknown"), args.quick)
      result["device"] = {k: probe.get(k) for k in ("backend", "device_kind", "device_count",
                                                    "memory_bytes", "torch_cuda_device", "cpu_count")}
      result["ratios"] = ratios(result["parts"])
      result["wall_s"] = time.perf_counter() - start
      write_json_atomic(out, result)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  print(table(result))
  print(f"wrote {out}")
  return result


if __name__ == "__main__":
  main()
