"""TransReID-SSL's CFS subset selection: rank a pre-training pool by how little fine-tuning moves it.

    python -m jreid.tools.cfs --source runs/dino_pool --target runs/dino_pool_ft \\
        --pool luperson --out cfs_luperson.txt [--order highest] [--root ~/datasets]

Each image of `--pool`'s training split is embedded by both runs (each with
its own input size, normalisation and test feature, as its evaluation does:
TransReID-SSL uses the pre-BN CLS), scored by the cosine of the two
features (`jreid.data.subsets.cfs_scores`) and written best first as a
ranked list. Pre-train on its head with
`--config.data.train_subset=cfs_luperson.txt --config.data.train_subset_fraction=0.5`.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

import jreid
from jreid.core import paths
from jreid.data import datasets, subsets
from jreid.errors import ReIDError
from jreid.evaluation import retrieval


def pool_features(run, records) -> np.ndarray:
  """A run's test features of `records`, as its own evaluation extracts them."""
  return retrieval.extract_features(run.features_fn, run.state, records, mesh=run.prepared.mesh,
                                    options=run.prepared.options, batch_size=run.config.eval.batch_size)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m jreid.tools.cfs", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--source", required=True, help="the source proxy: a run pre-trained on the pool")
  parser.add_argument("--target", required=True, help="the target proxy: that run fine-tuned downstream")
  parser.add_argument("--pool", required=True, help="the pool's dataset name (its training split)")
  parser.add_argument("--root", default="", help="the datasets root (default: the source run's)")
  parser.add_argument("--out", required=True, help="the ranked list to write (text)")
  parser.add_argument("--order", default="highest", choices=subsets.ORDERS,
                      help="which end is kept first (the paper keeps the most similar)")
  args = parser.parse_args(argv)
  try:
    out = paths.check_output_file(pathlib.Path(args.out).expanduser(), "the ranked list")
    source, target = jreid.load(args.source), jreid.load(args.target)
    root = args.root or source.config.data.root
    records = datasets.get(args.pool, root).train
    scores = subsets.cfs_scores(pool_features(source, records), pool_features(target, records))
    with paths.writing(out, "the ranked list", "an earlier list of that name may be incomplete"):
      subsets.write_ranked_list(out, records, scores, root, args.order)
  except ReIDError as err:
    print(f"jreid.tools.cfs: error: {err}", file=sys.stderr, flush=True)
    return 1
  print(f"wrote {len(records)} images of {args.pool} ranked by CFS ({args.order} first) to {out}; "
        f"scores {scores.min():.4f}..{scores.max():.4f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
