"""Images/s of the training input pipeline (decode, resize, flip, pad-crop, erase, normalise).

    python -m benchmarks.input_pipeline --config=configs/baseline.py:synth --out=benchmarks/results/input_pipeline.json

Reads the config's training set (SynthPerson is generated on first use) and
times `--batches` batches after one warm-up batch, for each thread/worker
setting given.
"""
import argparse
import os
import time

from absl import flags

from benchmarks.common import load_config, write_result
from jreid.data import datasets, pipeline
from jreid.data.records import relabel


def measure(records, config, batches: int, threads: int, workers: int) -> float:
  dataset = pipeline.train_dataset(
      records, options=pipeline.ImageOptions.from_config(config.data),
      batch_size=config.train.batch_size, num_instances=config.data.num_instances,
      num_steps=batches + 1, seed=0, num_threads=threads, workers=workers)
  iterator = iter(dataset)
  next(iterator)
  start = time.perf_counter()
  for _ in range(batches):
    next(iterator)
  return batches * config.train.batch_size / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/baseline.py:synth")
  parser.add_argument("--batches", type=int, default=20)
  parser.add_argument("--settings", default="1:0,2:0,2:2", help="threads:workers pairs")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  flags.FLAGS.mark_as_parsed()  # grain's worker processes read absl flags
  config = load_config(args.config)
  records = relabel(datasets.get_many(config.data.train.split(","), config.data.root).train)
  rows = []
  for setting in args.settings.split(","):
    threads, workers = map(int, setting.split(":"))
    rate = measure(records, config, args.batches, threads, workers)
    rows.append({"threads": threads, "workers": workers, "images_per_s": rate})
    print(f"threads {threads} workers {workers}: {rate:.0f} img/s", flush=True)
  write_result(args.out, {"benchmark": "input_pipeline", "config": args.config,
                          "image": [config.data.height, config.data.width],
                          "batch": config.train.batch_size, "cpu_count": os.cpu_count(),
                          "results": rows})


if __name__ == "__main__":
  main()
