"""Domain generalisation (DCAC, Sec. 5.1): train on source domains, test on domains never trained on.

`run(config, workdir)` reads `config.dg` (`jreid.config_blocks.dg`):

  * "single_source": one run trained on `dg.sources` and tested on every
    dataset of `dg.targets` (DCAC's MA->MS, MA->C3, ...);
  * "leave_one_out", the multi-source protocol: for each dataset of
    `dg.targets`, one run trained on all the others combined and tested on it.

Each run is `jreid.train.loop.train_and_evaluate` of a single-protocol config
in its own sub-folder (`source_<names>/`, `heldout_<name>/`), so its
checkpoints, logs and results.json are those of any run and `jreid.load`
opens it. The per-target table (mAP, rank-1, rank-5, mINP and their average
over the targets) is printed and written to `results.json`. A stopped
protocol resumes: a sub-run whose results.json holds its targets is read, not
retrained; an unfinished one resumes from its own checkpoints.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import pathlib

import jax

from jreid import config_blocks
from jreid.core import paths, reporting
from jreid.errors import ConfigError
from jreid.train import loop

MODES = ("single_source", "leave_one_out")
COLUMNS = (("mAP", "mAP"), ("rank1", "rank-1"), ("rank5", "rank-5"), ("mINP", "mINP"))


def _names(text: str) -> list[str]:
  return [n.strip() for n in text.split(",") if n.strip()]


@dataclasses.dataclass(frozen=True)
class SubRun:
  folder: str                # under the protocol's workdir
  train: tuple[str, ...]     # combined into one training set
  test: tuple[str, ...]      # the targets this run is evaluated on


def plan(config) -> list[SubRun]:
  """The runs `config.dg` asks for, checked before any training."""
  dg = config.dg
  expected = set(config_blocks.dg().keys())
  if set(dg.keys()) != expected:
    raise ConfigError(f"config.dg keys differ from config_blocks.dg(): unknown "
                      f"{sorted(set(dg.keys()) - expected)}, missing {sorted(expected - set(dg.keys()))}")
  if dg.mode not in MODES:
    raise ConfigError(f"dg.mode={dg.mode!r}; choose one of {MODES}")
  if config.data.train or config.data.test:
    raise ConfigError("the dg protocol sets each run's data.train and data.test from config.dg; "
                      f"leave them empty (got train={config.data.train!r}, test={config.data.test!r})")
  sources, targets = _names(dg.sources), _names(dg.targets)
  if not targets:
    raise ConfigError("dg.targets is empty: name the held-out test datasets, e.g. 'msmt17,cuhk03_labeled'")
  for key, names in (("sources", sources), ("targets", targets)):
    if len(set(names)) != len(names):
      raise ConfigError(f"dg.{key} names a dataset twice: {names}")
  if dg.mode == "single_source":
    if not sources:
      raise ConfigError("dg.mode='single_source' trains on dg.sources, which is empty")
    if set(sources) & set(targets):
      raise ConfigError(f"dg.targets {sorted(set(sources) & set(targets))} are also sources: "
                        "a domain-generalisation target is never trained on")
    tested = targets + (sources if dg.test_sources else [])
    return [SubRun(_folder("source", sources), tuple(sources), tuple(tested))]
  if dg.test_sources:
    raise ConfigError("dg.test_sources applies to dg.mode='single_source' (leave_one_out's "
                      "sources change from run to run)")
  if sources:
    raise ConfigError(f"dg.mode='leave_one_out' trains on the other targets; dg.sources={dg.sources!r} "
                      "must be empty")
  if len(targets) < 2:
    raise ConfigError(f"dg.mode='leave_one_out' needs at least two targets, got {targets}")
  return [SubRun(_folder("heldout", [t]), tuple(n for n in targets if n != t), (t,)) for t in targets]


def _folder(prefix: str, names: list[str]) -> str:
  return f"{prefix}_" + "+".join(n.replace("/", "_") for n in names)


def sub_config(config, sub: SubRun):
  """The single run's config: the user's, with this run's datasets and no dg section.

  Saved as the sub-folder's config.json, it trains on its own (`jreid.train`).
  """
  out = copy.deepcopy(config)
  with out.unlocked():
    del out["dg"]
    out.protocol = "single"
    out.data.train = ",".join(sub.train)
    out.data.test = ",".join(sub.test)
  return out


def _differences(saved: dict, wanted: dict, where: str = "") -> list[str]:
  if isinstance(saved, dict) and isinstance(wanted, dict):
    return [d for key in sorted(set(saved) | set(wanted))
            for d in _differences(saved.get(key), wanted.get(key), f"{where}.{key}".lstrip("."))]
  return [] if saved == wanted else [where]


def finished_results(folder: pathlib.Path, config, sub: SubRun) -> dict | None:
  """The sub-run's own results when it ran to its end with this config, else None (train it)."""
  results_file = folder / "results.json"
  if not results_file.is_file():
    return None
  saved = json.loads((folder / "config.json").read_text())
  changed = _differences(saved, json.loads(config.to_json()))
  if changed:
    raise ConfigError(f"{folder} holds a finished run of another config (differs in {changed[:5]}); "
                      "use a fresh workdir, or remove that folder to retrain it")
  results = json.loads(results_file.read_text())
  return results if set(sub.test) <= set(results) else None


def _row(numbers: dict) -> dict:
  return {key: numbers[key] for key, _ in COLUMNS}


def format_table(results: dict) -> str:
  targets = results["targets"]
  width = max(12, *(len(t) + 2 for t in targets))
  trained = {t: ",".join(v["trained_on"]) for t, v in targets.items()}
  source_width = max(12, *(len(s) + 2 for s in trained.values()))
  head = (f"{'target':<{width}}{'trained on':<{source_width}}"
          + "".join(f"{label:>9}" for _, label in COLUMNS))
  cells = lambda numbers: "".join(f"{numbers[key]:>9.2f}" for key, _ in COLUMNS)
  lines = [f"domain generalisation, {results['mode']} (percent)", head]
  lines += [f"{t:<{width}}{trained[t]:<{source_width}}" + cells(v) for t, v in targets.items()]
  if "average" in results:
    lines.append(f"{'average':<{width + source_width}}" + cells(results["average"]))
  for name, numbers in results.get("sources", {}).items():
    lines.append(f"{name:<{width}}{'(source)':<{source_width}}" + cells(numbers))
  return "\n".join(lines)


def run(config, workdir: str | pathlib.Path) -> dict:
  """Trains and tests every run of `plan(config)`; returns results.json's content."""
  workdir = paths.check_output_folder(workdir, "workdir")
  is_main = jax.process_index() == 0
  log = (lambda text: print(text, flush=True)) if is_main else (lambda text: None)
  subs = plan(config)

  @reporting.once
  def write_config() -> None:  # when the first run starts: a refused run writes nothing
    if is_main:
      reporting.write_json_atomic(workdir / "config.json", json.loads(config.to_json()))

  results = {"mode": config.dg.mode, "targets": {}}
  if config.dg.test_sources:
    results["sources"] = {}
  for index, sub in enumerate(subs):
    folder, one = workdir / sub.folder, sub_config(config, sub)
    numbers = finished_results(folder, one, sub)
    if numbers is None:
      log(f"dg run {index + 1}/{len(subs)}: train on {', '.join(sub.train)}, test on "
          f"{', '.join(sub.test)} in {folder}")
      numbers = loop.train(one, folder, on_start=write_config).results
    else:
      log(f"dg run {index + 1}/{len(subs)}: finished earlier, read from {folder / 'results.json'}")
    for target in sub.test:
      kind = "sources" if target in sub.train else "targets"
      results[kind][target] = {"trained_on": list(sub.train), "run": sub.folder,
                               **_row(numbers[target])}
    write_config()
    if is_main:
      reporting.write_json_atomic(workdir / "results.json", results)
  rows = results["targets"].values()
  results["average"] = {key: sum(r[key] for r in rows) / len(rows) for key, _ in COLUMNS}
  log(format_table(results))
  if is_main:
    reporting.write_json_atomic(workdir / "results.json", results)
  return results
