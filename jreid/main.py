"""Command line: `python -m jreid.main --config=configs/baseline.py:synth --workdir=DIR`.

Any config value can be overridden (`--config.seed=1`, `--config.train.steps=N`).
`config.protocol` picks what drives the loop (`jreid.protocols`); a notebook
calls the same with `jreid.train(config, workdir)`.
"""
import re
import sys

from absl import flags
from ml_collections import config_flags

from jreid import protocols  # light: a protocol's module (and jax) is imported when it runs
from jreid.errors import ReIDError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment file, e.g. configs/baseline.py:synth",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, logs and results go.")
flags.mark_flags_as_required(["config", "workdir"])


def fail(message: str, code: int = 1):
  print(f"jreid: error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


def parse_command_line(argv: list[str]) -> None:
  """Flag parsing with one-line errors: a mistyped `--config.x.y` names the key and a suggestion."""
  try:
    remaining = flags.FLAGS(argv)
  except flags.Error as err:
    fail(str(err), 2)
  except (KeyError, AttributeError, TypeError, ValueError) as err:
    text = str(err.args[0] if err.args else err).replace("\\n", " ")
    detail = " ".join(re.sub(r"[\\'\"]", "", text).split())
    overrides = [a for a in argv[1:] if a.startswith("--config.")]
    fail(f"invalid config override {overrides}: {detail}", 2)
  if len(remaining) > 1:
    fail(f"unexpected arguments: {remaining[1:]}", 2)


def main(argv: list[str] | None = None) -> None:
  parse_command_line(sys.argv if argv is None else argv)
  config = _CONFIG.value
  try:
    protocols.run(config, _WORKDIR.value)
  except ReIDError as err:
    fail(str(err))


if __name__ == "__main__":
  main()
