"""Command line: `python -m jreid.main --config=configs/baseline.py:synth --workdir=DIR`.

Any config value can be overridden (`--config.seed=1`, `--config.train.steps=N`).
`config.protocol` picks what drives the loop (`jreid.protocols`); a notebook
calls the same with `jreid.train(config, workdir)`.

Flags:
  --config=FILE[:PRESET]   the experiment file (configs/*.py) and its preset
  --config.KEY=VALUE       overrides one config value, e.g. --config.train.steps=100
  --workdir=DIR            where checkpoints, logs and results go
"""
import difflib
import re
import sys

from absl import flags
from ml_collections import config_flags

from jreid import config_blocks
from jreid import protocols  # light: a protocol's module (and jax) is imported when it runs
from jreid.errors import ReIDError

HELP = ("-h", "--help", "-help", "--helpfull", "-helpfull")


def fail(message: str, code: int = 1):
  print(f"jreid: error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


def split_config_spec(argv: list[str]) -> tuple[str | None, list[str]]:
  """(the `--config=SPEC` / `--config SPEC` value, argv without it); `--config.x=v` stays in argv."""
  spec, rest, args = None, argv[:1], iter(argv[1:])
  for arg in args:
    match = re.fullmatch(r"--?config(=(.*))?", arg, flags=re.DOTALL)
    if match is None:
      rest.append(arg)
    elif match.group(1) is not None:
      spec = match.group(2)
    else:
      spec = next(args, None)
      if spec is None:
        fail("flag --config needs a value: an experiment file, e.g. --config=configs/baseline.py:smoke", 2)
  return spec, rest


def parse_command_line(argv: list[str]):
  """(config, workdir) with one-line errors: the config file, and a mistyped `--config.x.y`.

  The config file is read by `config_blocks.load_config`, and its overrides
  are parsed by a fresh `flags.FlagValues` per call, so `main` can run many
  times in one process (tests call it in-process).
  """
  spec, rest = split_config_spec(argv)
  if any(arg in HELP for arg in rest[1:]):
    print(__doc__)
    sys.exit(0)
  if spec is None:
    fail("flag --config must be given: an experiment file, e.g. --config=configs/baseline.py:smoke", 2)
  try:
    config = config_blocks.load_config(spec)
  except ReIDError as err:
    fail(str(err), 2)
  values = flags.FlagValues()
  try:
    holder = config_flags.DEFINE_config_dict("config", config, "The experiment's config.",
                                             flag_values=values, lock_config=True, sys_argv=rest)
    workdir = flags.DEFINE_string("workdir", None, "Where checkpoints, logs and results go.",
                                  flag_values=values)
    flags.mark_flag_as_required("workdir", flag_values=values)
    remaining = values(rest)
  except flags.Error as err:
    section = re.match(r"flag --config\.([\w.]+)=.*as a ConfigDict", str(err))
    if section:
      keys = list(_get(config, section.group(1)).keys())
      example = "name" if "name" in keys else keys[0]
      fail(f"config.{section.group(1)} is a section, not a value: override its keys, e.g. "
           f"--config.{section.group(1)}.{example}=...", 2)
    fail(str(err), 2)
  except (KeyError, AttributeError, TypeError, ValueError) as err:
    overrides = [a for a in rest[1:] if re.match(r"--?(no)?config\.", a)]
    unknown = next(filter(None, (_unknown_key(config, arg) for arg in overrides)), None)
    if unknown:
      fail(unknown, 2)
    text = str(err.args[0] if err.args else err).replace("\\n", " ")
    detail = " ".join(re.sub(r"[\\'\"]", "", text).split())
    fail(f"invalid config override {overrides}: {detail}", 2)
  if len(remaining) > 1:
    fail(f"unexpected arguments: {remaining[1:]}", 2)
  return holder.value, workdir.value


def _get(config, dotted: str):
  for part in dotted.split("."):
    config = config[part]
  return config


def _paths(config, prefix: str = "") -> list[str]:
  """Every dotted key of `config`, sections included."""
  out = []
  for key, value in config.items():
    out.append(prefix + key)
    if hasattr(value, "items"):
      out += _paths(value, f"{prefix}{key}.")
  return out


def _unknown_key(config, override: str) -> str | None:
  """'config.model has no key width (did you mean model.backbone.width?)' for an override
  naming a key the config lacks; None when every part of its path exists."""
  dotted = re.sub(r"^--?(no)?config\.", "", override).partition("=")[0]
  section, where = config, "config"
  for part in dotted.split("."):
    if not hasattr(section, "keys") or part not in section:
      if not hasattr(section, "keys"):
        return f"{where} is a value, not a section: --config.{dotted} names no config key"
      paths = _paths(config)
      # The same key elsewhere (a key that moved: model.width -> model.backbone.width), nearest first.
      inside = where[len("config."):]
      moved = sorted((p for p in paths if p.rpartition(".")[2] == part),
                     key=lambda p: not p.startswith(inside + "."))
      close = difflib.get_close_matches(dotted, paths, n=1)
      hint = (moved or close)[:1]
      return (f"unknown config key --config.{dotted}: {where} has no key {part!r}"
              + (f" (did you mean {hint[0]}?)" if hint else f"; its keys: {sorted(section.keys())}"))
    section, where = section[part], f"{where}.{part}"
  return None


def main(argv: list[str] | None = None) -> None:
  """`python -m jreid.main <argv>`; `argv` is the arguments after the program (default: sys.argv[1:])."""
  args = sys.argv[1:] if argv is None else list(argv)
  config, workdir = parse_command_line(["jreid.main", *args])
  try:
    protocols.run(config, workdir)
  except ReIDError as err:
    fail(str(err))


if __name__ == "__main__":
  main()
