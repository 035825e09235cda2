"""Training images/s with the devices split over processes (launch/local_multiprocess.sh) vs one process.

    python -m benchmarks.multiprocess_step --processes=2 --cpu_devices=1 \\
        --out=benchmarks/results/multiprocess_cpu.json

The same run twice over the same devices: one process holding them all, then
`--processes` processes through `jax.distributed` (the multi-host code path:
gloo on a CPU, NCCL between GPUs), GPUs split evenly, on a CPU
`--cpu_devices` simulated devices each. images/s is the median of the steps
logged after the first `--warmup` (compilation); the two runs' losses are
compared as well (the same global batch, the same mathematics). The data set
(SynthPerson) is generated before the processes start, so they only read it.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

from benchmarks.common import REPO, load_config, write_result
from jreid.data import datasets

SMOKE = ("configs/baseline.py:smoke", ("--config.train.steps=8", "--config.train.checkpoint_every=8"))


def _steps(workdir: pathlib.Path) -> list[dict]:
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _run(command: list[str], env: dict) -> None:
  result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
  if result.returncode:
    raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-3000:]}")


def measure(config: str, overrides, *, processes: int, cpu_devices: int, warmup: int = 2,
            scratch: str | None = None, prepare_data: bool = True) -> dict:
  """{'one_process', 'processes': images/s and loss per logged step, 'max_loss_diff', ...}.

  The runs are `scratch`/one and `scratch`/many. `prepare_data=False` when the
  overrides point at a folder that is ready (tests/train/test_multiprocess.py's).
  """
  if prepare_data:  # SynthPerson: generated now, not by the processes at once
    settings = load_config(config)
    datasets.get_many(settings.data.train.split(","), settings.data.root)
  scratch = pathlib.Path(scratch or tempfile.mkdtemp(prefix="jreid_multiprocess_"))
  args = [f"--config={config}", "--config.train.log_every=1", *overrides]
  env = dict(os.environ, PYTHON=sys.executable)
  gpus = "JAX_PLATFORMS" not in os.environ and _gpu_count() > 0
  devices_flag = f"--xla_force_host_platform_device_count={processes * cpu_devices}"
  one_env = dict(env) if gpus else dict(env, XLA_FLAGS=f"{env.get('XLA_FLAGS', '')} {devices_flag}")
  _run([sys.executable, "-m", "jreid.main", *args, f"--workdir={scratch / 'one'}"], one_env)
  many_env = dict(env) if gpus else dict(env, CPU_DEVICES_PER_PROCESS=str(cpu_devices))
  config_arg, rest = args[0].removeprefix("--config="), args[1:]
  _run(["bash", "launch/local_multiprocess.sh", str(processes), config_arg, str(scratch / "many"),
        *rest], many_env)
  rows = {}
  for name in ("one", "many"):
    steps = _steps(scratch / name)
    timed = [s["img_per_s"] for s in steps[warmup:]] or [steps[-1]["img_per_s"]]
    rows[name] = {"images_per_s": statistics.median(timed), "losses": [s["loss"] for s in steps]}
  diffs = [abs(a - b) for a, b in zip(rows["one"]["losses"], rows["many"]["losses"])]
  return {"config": config, "overrides": list(overrides), "processes": processes,
          "devices": "gpu" if gpus else f"cpu x{processes * cpu_devices}",
          "one_process": rows["one"], "multi_process": rows["many"], "max_loss_diff": max(diffs),
          "scaling": rows["many"]["images_per_s"] / rows["one"]["images_per_s"]}


def _gpu_count() -> int:
  try:
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
  except OSError:
    return 0
  return sum(line.startswith("GPU ") for line in listed.splitlines())


def device_row(quick: bool, scratch: str) -> dict:
  """The device suite's part: every local GPU, one process each (CPU: 2 processes x 1 device)."""
  gpus = 0 if "JAX_PLATFORMS" in os.environ else _gpu_count()
  if quick or not gpus:
    return measure(*SMOKE, processes=2, cpu_devices=1, scratch=scratch)
  overrides = ("--config.train.steps=30", "--config.train.checkpoint_every=30",
               "--config.eval.before_training=False")
  return measure("configs/baseline.py:synth", overrides, processes=gpus, cpu_devices=1,
                 warmup=5, scratch=scratch)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default=SMOKE[0])
  parser.add_argument("--processes", type=int, default=2)
  parser.add_argument("--cpu_devices", type=int, default=1, help="simulated devices per CPU process")
  parser.add_argument("--steps", type=int, default=8)
  parser.add_argument("--out", default="")
  args, overrides = parser.parse_known_args()
  overrides = [f"--config.train.steps={args.steps}", f"--config.train.checkpoint_every={args.steps}",
               *overrides]
  result = measure(args.config, overrides, processes=args.processes, cpu_devices=args.cpu_devices)
  print(f"one process {result['one_process']['images_per_s']:.1f} img/s, {args.processes} processes "
        f"{result['multi_process']['images_per_s']:.1f} img/s, max loss diff {result['max_loss_diff']:.2e}")
  write_result(args.out, {"benchmark": "multiprocess_step", **result})


if __name__ == "__main__":
  main()
