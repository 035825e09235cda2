"""Images/s of the training input pipeline (decode, resize, flip, pad-crop, erase, normalise).

    python -m benchmarks.input_pipeline --config=configs/baseline.py:synth --out=benchmarks/results/input_pipeline.json
    python -m benchmarks.input_pipeline --config=configs/baseline.py:synth --format=folder,tfds \\
        --tfds_dir=/tmp/jreid_tfds --out=benchmarks/results/input_pipeline_tfds.json

Reads the config's training set (SynthPerson is generated on first use) and
times `--batches` batches after one warm-up batch (best of `--repeats`), for
each thread/worker setting given and each `--format`: `folder` decodes the JPEG files under
data.root, `tfds` the same records' bytes from jreid's ArrayRecord build
(`jreid.data.tfds_builders`, built into `--tfds_dir` first if missing). Both
streams are the same records in the same order, so the batches are identical
and only where the bytes come from differs. For tfds the build time and the
time to read the records (labels) back are reported too, and for both the
time to fetch one image's encoded bytes without decoding it.
"""
import argparse
import os
import pathlib
import time

import ml_collections
from absl import flags

from benchmarks.common import load_config, write_result
from jreid.data import datasets, pipeline, sources
from jreid.data.records import combine, relabel


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


def read_bytes_us(records) -> float:
  """Microseconds to fetch one image's encoded bytes (no decoding), over every record."""
  start = time.perf_counter()
  for record in records:
    record.stored() if record.stored else pathlib.Path(record.path).read_bytes()
  return (time.perf_counter() - start) / len(records) * 1e6


def tfds_records(names, config, tfds_dir: str) -> tuple[list, dict]:
  """The training records read from their tfds builds (built first where missing), and timings."""
  from jreid.data import array_record_source, tfds_builders
  builds = [array_record_source.build_of(name) for name in names]
  existed = all((b.directory(tfds_dir) / "dataset_info.json").is_file() for b in builds)
  start = time.perf_counter()
  for name, build in zip(names, builds):
    tfds_builders.build(name, pathlib.Path(config.data.root).expanduser() / build.folder, tfds_dir)
  built = time.perf_counter()
  data = ml_collections.ConfigDict(dict(format="tfds", tfds_dir=tfds_dir, root=config.data.root))
  train = combine([sources.get(name, data) for name in names]).train
  return relabel(train), {"build_s": None if existed else built - start,
                          "read_records_s": time.perf_counter() - built}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/baseline.py:synth")
  parser.add_argument("--batches", type=int, default=20)
  parser.add_argument("--settings", default="1:0,2:0,2:2", help="threads:workers pairs")
  parser.add_argument("--repeats", type=int, default=1, help="runs per setting; the best is kept")
  parser.add_argument("--format", default="folder", help="comma-separated: folder, tfds")
  parser.add_argument("--tfds_dir", default="/tmp/jreid_tfds", help="where --format=tfds builds go")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  flags.FLAGS.mark_as_parsed()  # grain's worker processes read absl flags
  config = load_config(args.config)
  names = config.data.train.split(",")
  records = {"folder": relabel(datasets.get_many(names, config.data.root).train)}
  formats = args.format.split(",")
  extra = {}
  if "tfds" in formats:
    records["tfds"], extra = tfds_records(names, config, args.tfds_dir)
    if records["tfds"] != records["folder"]:
      raise SystemExit("the tfds build's records differ from the folder reader's")
    built = "reused" if extra["build_s"] is None else f"built in {extra['build_s']:.1f} s"
    print(f"tfds: {built}, records read in {extra['read_records_s']:.2f} s", flush=True)
  rows = []
  for setting in args.settings.split(","):
    threads, workers = map(int, setting.split(":"))
    for data_format in formats:
      rates = [measure(records[data_format], config, args.batches, threads, workers)
               for _ in range(args.repeats)]
      rows.append({"format": data_format, "threads": threads, "workers": workers,
                   "images_per_s": max(rates), "all_images_per_s": rates})
      print(f"{data_format:6s} threads {threads} workers {workers}: {max(rates):.0f} img/s "
            f"(best of {len(rates)})", flush=True)
  read = {f: read_bytes_us(records[f]) for f in formats}  # the file cache is warm for both now
  print("bytes of one image: " + ", ".join(f"{f} {us:.0f} us" for f, us in read.items()))
  result = {"benchmark": "input_pipeline", "config": args.config,
            "image": [config.data.height, config.data.width], "batch": config.train.batch_size,
            "batches": args.batches, "repeats": args.repeats, "images": len(records["folder"]),
            "read_bytes_us": read,
            "cpu_count": os.cpu_count(), "results": rows}
  if "tfds" in formats:
    result["tfds"] = extra
  write_result(args.out, result)


if __name__ == "__main__":
  main()
