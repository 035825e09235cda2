"""Visual reports of a trained run: rank lists, distance distribution, ROC curve.

    python -m jreid.tools.visualize --workdir=runs/synth [--dataset=synth_small] [--num_queries=10] [--topk=10]

Rebuilds the run's model from `DIR/config.json`, restores its latest
checkpoint, ranks each test set and writes PNGs to `DIR/visualize/<dataset>/`.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import ml_collections

from jreid.errors import ReIDError
from jreid.evaluation import retrieval
from jreid.models.reid import from_flat_config
from jreid.train import checkpoint, loop


def load_run(workdir: pathlib.Path):
  """The run's config, its prepared pieces and its latest train state."""
  config_path = workdir / "config.json"
  if not config_path.is_file():
    raise ReIDError(f"{config_path} not found: --workdir must be a jreid run folder")
  config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
  # Runs saved by an older jreid have the flat model layout, some without keys
  # added since; their defaults reproduce the old behaviour (e.g. `conv_impl`
  # changes no number).
  if isinstance(config.model.get("backbone"), str):
    config.model = from_flat_config(config.model)
  run = loop.prepare(config)
  ckpt, step = checkpoint.open_existing(workdir)
  state, _ = ckpt.restore(step, run.abstract_state)
  return config, run, state, step


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--dataset", default="", help="one test set (default: all of the run's)")
  parser.add_argument("--num_queries", type=int, default=10)
  parser.add_argument("--topk", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0, help="picks which queries are drawn")
  args = parser.parse_args(argv)
  workdir = pathlib.Path(args.workdir).expanduser()
  try:
    config, run, state, step = load_run(workdir)
    features_fn = jax.jit(run.method.features)
    names = [args.dataset] if args.dataset else list(run.data.tests)
    for name in names:
      if name not in run.data.tests:
        raise ReIDError(f"--dataset={name!r} is not a test set of this run: {list(run.data.tests)}")
      out_dir = workdir / "visualize" / name
      numbers = retrieval.evaluate_split(
          features_fn, state, run.data.tests[name], mesh=run.mesh, options=run.options,
          batch_size=config.eval.batch_size, metric=config.eval.metric,
          report=retrieval.ReportOptions(out_dir, args.num_queries, args.topk, args.seed),
          post=retrieval.PostProcessing.from_config(config.eval))
      print(f"{name} (step {step}): mAP {numbers['mAP']:.2f} rank-1 {numbers['rank1']:.2f}; "
            f"pictures in {out_dir}")
  except ReIDError as err:
    print(f"jreid: error: {err}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  main()
