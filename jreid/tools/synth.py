"""Generates (or finds cached) a SynthPerson preset and prints where it is.

    python -m jreid.tools.synth --preset small --seed 0 --root /tmp/jreid_data
    python -m jreid.tools.synth --list
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from jreid.data import synth
from jreid.errors import ReIDError
from jreid.tools import int_at_least


def _describe(preset: synth.Preset) -> str:
  parts = [f"{d.name}({d.style}{', unseen' if d.unseen else ''}: {d.cameras} cams, "
           f"{d.train_ids}+{d.test_ids} ids)" for d in preset.domains]
  if preset.pool:
    parts.append(f"pool({preset.pool.domains} domains, {preset.pool.people} people)")
  return f"{preset.name:11s} {preset.about}\n{'':12s}" + " ".join(parts)


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m jreid.tools.synth", description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="small", help="one of: " + ", ".join(synth.PRESETS))
  parser.add_argument("--seed", type=int_at_least(0), default=0)
  parser.add_argument("--root", default="/tmp/jreid_data")
  parser.add_argument("--list", action="store_true", help="list the presets and exit")
  args = parser.parse_args(argv)
  if args.list:
    for preset in synth.PRESETS.values():
      print(_describe(preset))
    return
  try:
    synth.get_preset(args.preset)
  except ValueError as e:
    parser.error(str(e))
  start = time.perf_counter()
  try:
    path = synth.ensure(args.preset, args.root, args.seed)
  except ReIDError as err:
    print(f"jreid: error: {err}", file=sys.stderr, flush=True)
    sys.exit(1)
  manifest = json.loads((path / "manifest.json").read_text())
  print(path)
  for d in manifest["domains"]:
    c = d["counts"]
    print(f"  {d['name']:4s} {d['style']:13s} pids {d['pids'][0]}-{d['pids'][1]} cams {d['cameras'][0]}-"
          f"{d['cameras'][1]}: train {c['train']} ({c['train_ids']} ids), query {c['query']} "
          f"({c['query_ids']} ids), gallery {c['gallery']} (incl. {c['distractors']} distractors, "
          f"{c['junk']} junk)")
  if "pool" in manifest:
    p = manifest["pool"]
    print(f"  pool {p['images']} images, {p['domains']} domains, {p['tracklets']} tracklets, "
          f"{p['switched_labels']} switched labels: {path / p['tracklets_file']}")
  print(f"  ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
  main()
