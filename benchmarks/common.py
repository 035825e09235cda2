"""Small helpers shared by the benchmark scripts (config loading, JSON output)."""
import importlib.util
import json
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(spec: str):
  """`configs/x.py:arg` -> the ConfigDict, as `--config` does for jreid.main."""
  path, _, arg = spec.partition(":")
  path = pathlib.Path(path)
  if not path.is_absolute():
    path = REPO / path
  module_spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def write_result(out: str, result: dict) -> None:
  if not out:
    return
  path = pathlib.Path(out)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(result, indent=2) + "\n")
  print(f"wrote {path}")
