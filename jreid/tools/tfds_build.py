"""Builds a jreid dataset as tensorflow-datasets ArrayRecord files, for `config.data.format="tfds"`.

    python -m jreid.tools.tfds_build --dataset market1501 \\
        --manual_dir /data/Market-1501-v15.09.15 --data_dir ~/tensorflow_datasets
    python -m jreid.tools.tfds_build --dataset synth_small --manual_dir ~/.cache/jreid
    python -m jreid.tools.tfds_build --list

--manual_dir is the folder you downloaded (for MSMT17 the one holding MSMT17_V1/
or MSMT17_V2/; for SynthPerson the data root, where the set is generated first if
it is not there). The build holds exactly the records jreid's folder reader
gives (jreid.data.tfds_builders); it needs tensorflow-datasets (`pip install
jreid[tfds]`), not TensorFlow. A finished build is kept; a run then reads it with
`--config.data.format=tfds --config.data.tfds_dir=<data_dir>`.
"""
from __future__ import annotations

import argparse
import sys
import time

from jreid.data import array_record_source
from jreid.errors import ReIDError


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m jreid.tools.tfds_build", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dataset", help="a jreid dataset name: market1501, dukemtmc, msmt17, "
                      "cuhk03_labeled, cuhk03_detected, synth_<preset>[/<domain>|/pool]")
  parser.add_argument("--manual_dir", help="the folder you downloaded (SynthPerson: the data root)")
  parser.add_argument("--data_dir", default="~/tensorflow_datasets",
                      help="where tfds builds go (a run's config.data.tfds_dir)")
  parser.add_argument("--list", action="store_true", help="list the builders and their configs")
  args = parser.parse_args(argv)
  try:
    from jreid.data import tfds_builders  # the `tfds` extra
  except ImportError as err:
    print(f"jreid.tools.tfds_build: error: {err}; install it with pip install 'jreid[tfds]'",
          file=sys.stderr, flush=True)
    return 1
  if args.list:
    for name, builder in tfds_builders.BUILDERS.items():
      configs = [c.name for c in builder.BUILDER_CONFIGS]
      print(f"{name:14s} {', '.join(configs) if configs else '(no configs)'}")
    return 0
  if not args.dataset or not args.manual_dir:
    parser.error("--dataset and --manual_dir are required (or --list)")
  start = time.perf_counter()
  try:
    folder = tfds_builders.build(args.dataset, args.manual_dir, args.data_dir)
    split = array_record_source.get(args.dataset, args.data_dir, args.manual_dir)
  except ReIDError as err:
    print(f"jreid.tools.tfds_build: error: {err}", file=sys.stderr, flush=True)
    return 1
  print(f"{folder}: train {len(split.train)}, query {len(split.query)}, gallery "
        f"{len(split.gallery)} images ({time.perf_counter() - start:.1f} s)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
