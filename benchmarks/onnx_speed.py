"""onnxruntime images/s of an exported ReID model (`jreid.convert.onnx_export`), next to jreid's own.

    python -m benchmarks.onnx_speed --config=configs/baseline.py --height=256 --width=128 --batch=64 \\
        --out=benchmarks/results/onnx_speed_cpu.json

The model is the config's (random weights: speed does not depend on them),
exported as `python -m jreid.tools.export --out model.onnx` writes it, and
run by onnxruntime with the best provider it has (CUDA with onnxruntime-gpu,
else the CPU). Reports the export's wall time, the first and the median of
`--iterations` timed calls, images/s, the same for jreid's jitted features
on the JAX device, and the largest feature difference between the two.
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import tempfile
import time

import jax
import ml_collections
import numpy as np

from benchmarks.common import load_config, write_result
from jreid.core import run_once


def _median_call(fn, images, iterations: int) -> tuple[float, float]:
  start = time.perf_counter()
  fn(images)
  first = time.perf_counter() - start
  walls = []
  for _ in range(iterations):
    start = time.perf_counter()
    fn(images)
    walls.append(time.perf_counter() - start)
  return first, statistics.median(walls)


def measure(config: ml_collections.ConfigDict, *, batch: int, iterations: int = 10,
            scratch: str | None = None) -> dict:
  import onnxruntime

  from jreid.convert import onnx_export
  from jreid.models.reid import build_model
  height, width = config.data.height, config.data.width
  model = build_model(config.model, 16)
  variables = run_once.jit(lambda: model.init(jax.random.key(0), np.zeros((1, height, width, 3), np.float32),
                                              train=False))()
  features, metadata = onnx_export.run_features(config, jax.device_get(variables))
  start = time.perf_counter()
  proto = onnx_export.to_onnx(features, height, width, metadata=metadata)
  out = onnx_export.write_onnx(proto, pathlib.Path(scratch or tempfile.mkdtemp()) / "model.onnx")
  export_s = time.perf_counter() - start
  providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
               if p in onnxruntime.get_available_providers()]
  session = onnxruntime.InferenceSession(str(out), providers=providers)
  images = np.random.default_rng(0).normal(size=(batch, 3, height, width)).astype(np.float32)
  run_onnx = lambda x: session.run(None, {onnx_export.INPUT: x})[0]
  jitted = jax.jit(features)
  run_jax = lambda x: np.asarray(jitted(np.transpose(x, (0, 2, 3, 1))))
  rows = {}
  for name, fn in (("onnxruntime", run_onnx), ("jreid", run_jax)):
    first, median = _median_call(fn, images, iterations)
    rows[name] = {"first_call_s": first, "median_s": median, "images_per_s": batch / median}
  diff = float(np.abs(run_onnx(images) - run_jax(images)).max())
  return {"backbone": config.model.backbone.name, "image": [height, width], "batch": batch,
          "provider": session.get_providers()[0], "jax_device": jax.devices()[0].device_kind,
          "export_s": export_s, "file_mb": out.stat().st_size / 2**20, "max_abs_diff": diff, **rows}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/baseline.py:smoke")
  parser.add_argument("--height", type=int, default=0, help="default: the config's")
  parser.add_argument("--width", type=int, default=0)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--iterations", type=int, default=10)
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  config = load_config(args.config)
  config.data.update({k: v for k, v in (("height", args.height), ("width", args.width)) if v})
  result = measure(config, batch=args.batch, iterations=args.iterations)
  print(f"{result['backbone']} {result['image']} batch {args.batch}: onnxruntime "
        f"({result['provider']}) {result['onnxruntime']['images_per_s']:.1f} img/s, jreid "
        f"{result['jreid']['images_per_s']:.1f} img/s, max diff {result['max_abs_diff']:.1e}")
  write_result(args.out, {"benchmark": "onnx_speed", "config": args.config, **result})


if __name__ == "__main__":
  main()
