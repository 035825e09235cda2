"""Small helpers shared by the benchmark scripts (config loading, JSON output)."""
import json
import pathlib

from jreid.config_blocks import load_config  # noqa: F401  (re-exported for the scripts)

REPO = pathlib.Path(__file__).resolve().parents[1]


def write_result(out: str, result: dict) -> None:
  if not out:
    return
  path = pathlib.Path(out)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(result, indent=2) + "\n")
  print(f"wrote {path}")
