"""Small helpers shared by the benchmark scripts (config loading, runs of jreid.main, JSON output)."""
import argparse
import json
import pathlib
import subprocess
import sys
import time

from jreid.config_blocks import load_config  # noqa: F401  (re-exported for the scripts)

REPO = pathlib.Path(__file__).resolve().parents[1]


def write_result(out: str, result: dict) -> None:
  if not out:
    return
  path = pathlib.Path(out)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(result, indent=2) + "\n")
  print(f"wrote {path}")


def run_main(root: pathlib.Path, name: str, args: list[str], *, tag: str,
             done=lambda results: True) -> dict:
  """`python -m jreid.main <args> --workdir=<root>/<name>`, as a user types it, unless already done.

  A run whose `results.json` exists (and satisfies `done`) is read, not repeated;
  its wall time comes from `<root>/walls.json`, where every run this function
  times is recorded. Returns the command, the wall time (s) and the results.
  """
  workdir = root / name
  command = [sys.executable, "-m", "jreid.main", *args, f"--workdir={workdir}"]
  results_file = workdir / "results.json"
  walls_file = root / "walls.json"
  walls = json.loads(walls_file.read_text()) if walls_file.exists() else {}
  if not (results_file.exists() and done(json.loads(results_file.read_text()))):
    print(f"[{tag}] {name}: {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    walls = json.loads(walls_file.read_text()) if walls_file.exists() else {}
    walls[name] = time.perf_counter() - start
    root.mkdir(parents=True, exist_ok=True)
    walls_file.write_text(json.dumps(walls, indent=2))
  return {"command": " ".join(command[1:]), "wall_s": walls.get(name),
          "results": json.loads(results_file.read_text())}


def run_selection(known, default_root: str) -> tuple[pathlib.Path, list[str], str]:
  """The `--root`, `--only` and `--out` flags every run-table script takes: (root, names, out)."""
  parser = argparse.ArgumentParser()
  parser.add_argument("--root", default=default_root, help="one workdir per run below it")
  parser.add_argument("--only", default="", help="comma-separated run names; default all")
  parser.add_argument("--out", default="", help="the JSON file to write")
  args = parser.parse_args()
  names = [n for n in args.only.split(",") if n] or list(known)
  unknown = sorted(set(names) - set(known))
  if unknown:
    parser.error(f"unknown runs {unknown}; known: {list(known)}")
  root = pathlib.Path(args.root).resolve()
  root.mkdir(parents=True, exist_ok=True)
  return root, names, args.out
