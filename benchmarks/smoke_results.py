"""Every `:smoke` preset's numbers, to check that a refactor moves none of them.

    python -m benchmarks.smoke_results --root=/tmp/smoke_before --out=/tmp/before.json
    (change the code)
    python -m benchmarks.smoke_results --root=/tmp/smoke_after --out=/tmp/after.json \
        --compare=/tmp/before.json

Each preset runs as a user runs it (`python -m jreid.main`), on one SynthPerson
root shared by all runs. The fingerprint of a run is its `results.json` and the
logged losses of every step (`metrics.jsonl` without the timing column), so a
change that moves a loss but not yet a rounded metric is caught too. The
distillation smoke preset learns from the baseline smoke run's checkpoint, as
its test does. `--compare` prints every value that differs and exits 1.
"""
import argparse
import json
import pathlib
import sys

from benchmarks.common import run_main

PRESETS = ("baseline", "sbs", "mgn", "pcb", "distill", "dasa", "upreid", "upreid:smoke_moco",
           "upreid:smoke_cc", "upreid:smoke_icc", "upreid:smoke_no_hm", "vit", "transreid_ssl",
           "cluster_contrast", "dcac")
TIMING_KEYS = ("img_per_s",)


def config_spec(name: str) -> str:
  path, _, arg = name.partition(":")
  return f"configs/{path}.py:{arg or 'smoke'}"


def metric_lines(workdir: pathlib.Path) -> list[dict]:
  """The logged steps of a run; a lifelong run has one workdir per domain step."""
  files = sorted(workdir.glob("**/metrics.jsonl"))
  return [{"file": str(f.relative_to(workdir)),
           **{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS}}
          for f in files for line in f.read_text().splitlines()]


def fingerprint(root: pathlib.Path, names: list[str]) -> dict:
  out = {}
  for name in names:
    args = [f"--config={config_spec(name)}", f"--config.data.root={root / 'data'}"]
    if name == "distill":
      args.append(f"--config.teacher.checkpoint={root / 'baseline'}")
    run = run_main(root, name.replace(":", "_"), args, tag="smoke")
    out[name] = {"command": run["command"], "results": run["results"],
                 "metrics": metric_lines(root / name.replace(":", "_"))}
  return out


def differences(before, after, where: str = "") -> list[str]:
  if isinstance(before, dict) and isinstance(after, dict):
    found = [f"{where}/{k}: only in {'before' if k in before else 'after'}"
             for k in sorted(set(before) ^ set(after))]
    for key in sorted(set(before) & set(after)):
      if key not in ("command",):
        found += differences(before[key], after[key], f"{where}/{key}")
    return found
  if isinstance(before, list) and isinstance(after, list):
    if len(before) != len(after):
      return [f"{where}: {len(before)} entries before, {len(after)} after"]
    return [d for i, (b, a) in enumerate(zip(before, after)) for d in differences(b, a, f"{where}[{i}]")]
  return [] if before == after else [f"{where}: {before!r} -> {after!r}"]


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--root", required=True, help="one workdir per preset below it, and the data")
  parser.add_argument("--only", default="", help=f"comma-separated presets; default all of {PRESETS}")
  parser.add_argument("--out", required=True, help="the JSON file to write")
  parser.add_argument("--compare", default="", help="an earlier --out file to compare with")
  args = parser.parse_args()
  names = [n for n in args.only.split(",") if n] or list(PRESETS)
  if "distill" in names and "baseline" not in names:
    names.insert(0, "baseline")
  root = pathlib.Path(args.root).resolve()
  result = fingerprint(root, names)
  pathlib.Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
  print(f"wrote {args.out}")
  if args.compare:
    before = json.loads(pathlib.Path(args.compare).read_text())
    found = differences({k: before[k] for k in names if k in before}, result)
    print("\n".join(found) if found else f"identical: {', '.join(names)}")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
  main()
