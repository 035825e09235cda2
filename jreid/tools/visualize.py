"""Visual reports of a trained run: rank lists, distance distribution, ROC curve.

    python -m jreid.tools.visualize --workdir=runs/synth [--dataset=synth_small] [--num_queries=10] [--topk=10]

Opens the run with `jreid.load` (its config.json and latest checkpoint),
ranks each test set and writes PNGs to `DIR/visualize/<dataset>/`.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import jreid
from jreid.core import paths
from jreid.errors import ReIDError
from jreid.evaluation import retrieval
from jreid.tools import int_at_least


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m jreid.tools.visualize",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--dataset", default="", help="one test set (default: all of the run's)")
  parser.add_argument("--num_queries", type=int_at_least(1), default=10,
                      help="rank lists drawn (queries with a match)")
  parser.add_argument("--topk", type=int_at_least(1), default=10, help="gallery images per rank list")
  parser.add_argument("--seed", type=int_at_least(0), default=0, help="picks which queries are drawn")
  args = parser.parse_args(argv)
  workdir = pathlib.Path(args.workdir).expanduser()
  try:
    run = jreid.load(workdir)
    tests = list(run.prepared.data.tests)
    names = [args.dataset] if args.dataset else tests
    for name in names:
      if name not in tests:
        raise ReIDError(f"--dataset={name!r} is not a test set of this run: {tests}")
      out_dir = paths.check_output_folder(workdir / "visualize" / name, "the picture folder")
      with paths.writing(out_dir, "the pictures in", "earlier pictures there may be incomplete"):
        numbers = run.evaluate(name, report=retrieval.ReportOptions(out_dir, args.num_queries,
                                                                     args.topk, args.seed))
      print(f"{name} (step {run.step}): mAP {numbers['mAP']:.2f} rank-1 {numbers['rank1']:.2f}; "
            f"pictures in {out_dir}")
  except ReIDError as err:
    print(f"jreid: error: {err}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  main()
