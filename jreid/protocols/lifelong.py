"""The lifelong ReID protocol (LReID): train domains in sequence, evaluate every seen one after each.

`run(config, workdir)` is what `python -m jreid.main` runs for
`config.protocol="lifelong"` (configs/dasa.py), reading `config.lifelong`
(`jreid.methods.dasa.lifelong_config`). Each step is one run of
the shared loop (`jreid.train.loop.train`) in `workdir/step<k>_<domain>/`,
started from the previous step's weights (`init_from`: the classifier,
whose shape changes, starts fresh) and scheduled in epochs of that domain.
After a step:

  * the step's *bank* (the strategy's per-domain variables, `jreid.methods.dasa`)
    is saved to `banks/<k>_<domain>.msgpack` and its cameras to `banks/routing.json`;
  * every seen domain is evaluated, each test image embedded with the bank of
    its camera's domain (`jreid.evaluation.routing`); mAP / R-1 per domain and
    their averages go to `results.json` (rewritten after every step).

After the last step the unseen domains are evaluated under every routing
policy, storage is accounted (shared backbone, one bank, the classifier, as
the paper's Tab. 3), the paper-style table is printed and the seen-domain
average over steps is plotted (`seen_average.png`). A stopped run resumes:
finished steps are restored from their checkpoints, not retrained.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import pathlib

import jax

from jreid.core import partition, paths, reporting, sharding
from jreid.data import sources
from jreid.errors import ConfigError
from jreid.evaluation import routing
from jreid.evaluation.retrieval import evaluate_split
from jreid.methods.dasa import STRATEGIES
from jreid.train import loop


def _names(text: str) -> list[str]:
  return [n.strip() for n in text.split(",") if n.strip()]


@dataclasses.dataclass(frozen=True)
class Step:
  name: str                  # for folders and tables
  datasets: tuple[str, ...]  # trained together in this step (several for joint training)


def plan(config) -> list[Step]:
  domains = _names(config.lifelong.domains)
  if not domains:
    raise ConfigError("lifelong.domains is empty: name the datasets to train in order, "
                      "e.g. 'market1501,dukemtmc,cuhksysu,msmt17'")
  if len(set(domains)) != len(domains):
    raise ConfigError(f"lifelong.domains names a dataset twice: {domains}")
  if config.lifelong.strategy not in STRATEGIES:
    raise ConfigError(f"lifelong.strategy={config.lifelong.strategy!r}; choose one of "
                      f"{sorted(STRATEGIES)}")
  if STRATEGIES[config.lifelong.strategy].joint:
    return [Step("joint", tuple(domains))]
  return [Step(name, (name,)) for name in domains]


def check_config(config) -> None:
  """What would otherwise fail hours in: the method, the unseen policy, a pre-trained trunk."""
  if config.method != "dasa":
    raise ConfigError(f"the lifelong protocol trains method='dasa' (its strategies "
                      f"include the baselines), not method={config.method!r}")
  if config.lifelong.unseen_policy not in routing.POLICIES:
    raise ConfigError(f"lifelong.unseen_policy={config.lifelong.unseen_policy!r}; choose one "
                      f"of {routing.POLICIES}")
  strategy = STRATEGIES[config.lifelong.strategy]
  if strategy.trainable != ".*" and not config.init_from:
    raise ConfigError(f"lifelong.strategy={config.lifelong.strategy!r} freezes the convolutions, so "
                      "they must come pre-trained: set config.init_from (a PyTorch weights file, "
                      "a workdir, or recipe:configs/pretrain_synth.py)")


def step_config(config, index: int, step: Step, previous: str):
  """The shared loop's config for one step: its data, its schedule in epochs, where it starts from."""
  out = copy.deepcopy(config)
  lifelong = config.lifelong
  milestone = lifelong.first_milestone_epochs if index == 0 else lifelong.later_milestone_epochs
  out.data.train = ",".join(step.datasets)
  out.data.test = ""  # the protocol evaluates, with routing
  # Epochs of this step's own data; the loop resolves them to steps (jreid.train.durations).
  out.train.update(steps=0, epochs=float(lifelong.epochs))
  out.optim.update(warmup_steps=0, warmup_epochs=float(lifelong.warmup_epochs),
                   milestones=(), milestone_epochs=(float(milestone),))
  out.init_from = previous
  if lifelong.strategy == "lwf":
    # The first domain has nothing to remember: LwF starts as plain fine-tuning.
    out.lifelong.strategy = "lwf" if index > 0 else "finetune"
    out.lifelong.teacher = previous if index > 0 else ""
  return out


def _folder(index: int, step: Step) -> str:
  return f"step{index + 1}_{step.name.replace('/', '_')}"


def _summary(numbers: dict) -> dict:
  return {"mAP": numbers["mAP"], "rank1": numbers["rank1"], "mINP": numbers["mINP"]}


def _average(per_domain: dict) -> dict:
  keys = ("mAP", "rank1")
  return {k: sum(v[k] for v in per_domain.values()) / len(per_domain) for k in keys}


def storage(state, bank: dict) -> dict:
  """Bytes of the shared backbone, of one domain's bank and of the current classifier."""
  backbone = partition.nbytes(state.params["backbone"]) + partition.nbytes(
      state.batch_stats.get("backbone", {}))
  bank_bytes = partition.nbytes(bank)
  return {"backbone_bytes": backbone, "bank_bytes": bank_bytes,
          "classifier_bytes": partition.nbytes(state.params["head"]["classifier"]),
          "bank_fraction_of_backbone": bank_bytes / backbone}


def format_table(results: dict) -> str:
  """The paper's layout: one row per step, mAP / R-1 per seen domain and their average."""
  domains = results["domains"]
  width = max(12, *(len(d) + 2 for d in domains))
  head = f"{'after step':<22}" + "".join(f"{d:>{width}}" for d in domains) + f"{'seen avg':>{width}}"
  lines = [f"lifelong ReID, strategy {results['strategy']} (mAP / R-1, percent)", head]
  for row in results["steps"]:
    cells = [f"{row['seen'][d]['mAP']:.1f}/{row['seen'][d]['rank1']:.1f}" if d in row["seen"] else "-"
             for d in domains]
    avg = row["seen_average"]
    lines.append(f"{row['step']:<22}" + "".join(f"{c:>{width}}" for c in cells)
                 + f"{avg['mAP']:.1f}/{avg['rank1']:.1f}".rjust(width))
  if results.get("unseen"):
    unseen = results["unseen"]
    lines.append(f"unseen domains (routing policy {results['unseen_policy']}): " + ", ".join(
        f"{d} {v['mAP']:.1f}/{v['rank1']:.1f}" for d, v in unseen["domains"].items())
        + f"; average {unseen['average']['mAP']:.1f}/{unseen['average']['rank1']:.1f}")
  if results.get("storage"):
    s = results["storage"]
    mb = lambda n: f"{n / 2 ** 20:.3f} MB"
    lines += ["storage (the paper's Tab. 3):",
              f"  shared backbone        {mb(s['backbone_bytes'])}",
              f"  one domain's bank      {mb(s['bank_bytes'])} "
              f"({100 * s['bank_fraction_of_backbone']:.2f}% of the backbone)",
              f"  classifier (discarded) {mb(s['classifier_bytes'])}"]
  return "\n".join(lines)


def save_plot(results: dict, path: pathlib.Path) -> None:
  from jreid.evaluation.visualize import save_lifelong_curve
  save_lifelong_curve([row["step"] for row in results["steps"]],
                      [row["seen_average"]["mAP"] for row in results["steps"]],
                      [row["seen_average"]["rank1"] for row in results["steps"]],
                      path, title=f"lifelong ReID ({results['strategy']}): seen-domain average")


def run(config, workdir: str | pathlib.Path) -> dict:
  """Trains the domain sequence of `config.lifelong` and evaluates it; returns results.json's content."""
  workdir = paths.check_output_folder(workdir, "workdir")
  is_main = jax.process_index() == 0
  log = (lambda text: print(text, flush=True)) if is_main else (lambda text: None)

  @reporting.once
  def write_config() -> None:  # when the first step starts: a refused run writes nothing
    if is_main:
      reporting.write_json_atomic(workdir / "config.json", json.loads(config.to_json()))

  steps = plan(config)
  check_config(config)
  domains = [name for step in steps for name in step.datasets]
  unseen = _names(config.lifelong.unseen)
  splits = {name: sources.get(name, config.data) for name in domains + unseen}
  results = {"strategy": config.lifelong.strategy, "domains": domains, "unseen_domains": unseen,
             "unseen_policy": config.lifelong.unseen_policy, "steps": []}
  banks, camera_domains = [], {}
  previous = loop.resolve_init_from(config.init_from, config.data.root, log)
  mesh = sharding.data_mesh()
  for index, step in enumerate(steps):
    images = sum(len(splits[name].train) for name in step.datasets)
    folder = workdir / _folder(index, step)
    log(f"lifelong step {index + 1}/{len(steps)}: {', '.join(step.datasets)} "
        f"({images} training images) in {folder}")
    finished = loop.train(step_config(config, index, step, previous), folder, on_start=write_config)
    run, state = finished.run, finished.state
    bank = run.method.bank(state.params, state.batch_stats)
    banks.append(jax.device_get(bank))
    for name in step.datasets:
      camera_domains.update({key: index for key in routing.cameras_of(
          name, splits[name].train + splits[name].query + splits[name].gallery)})
    if is_main:
      routing.save_bank(workdir / "banks" / f"{index + 1}_{step.name.replace('/', '_')}.msgpack",
                        banks[-1])
      routing.save_camera_map(workdir / "banks" / "routing.json", camera_domains,
                              [s.name for s in steps[:index + 1]])
    evaluator = Evaluator(run, state, banks, camera_domains, splits, mesh, config.eval)
    seen, _ = evaluator([name for s in steps[:index + 1] for name in s.datasets], policy="last")
    row = {"step": step.name, "seen": seen, "seen_average": _average(seen)}
    results["steps"].append(row)
    log(f"after {step.name}: " + ", ".join(f"{d} mAP {v['mAP']:.2f} R-1 {v['rank1']:.2f}"
                                           for d, v in seen.items())
        + f"; seen average mAP {row['seen_average']['mAP']:.2f} R-1 {row['seen_average']['rank1']:.2f}")
    if is_main:
      reporting.write_json_atomic(workdir / "results.json", results)
    previous = str(folder)

  if unseen:
    results.update(unseen_results(evaluator, unseen, config.lifelong.unseen_policy))
  results["storage"] = storage(state, banks[-1])
  log(format_table(results))
  if is_main:
    reporting.write_json_atomic(workdir / "results.json", results)
    save_plot(results, workdir / "seen_average.png")
  return results


def unseen_results(evaluator: "Evaluator", names: list[str], policy: str) -> dict:
  """Unseen domains under every routing policy (one, when no strategy bank exists)."""
  has_banks = any(b["params"] or b["batch_stats"] for b in evaluator.banks)
  by_policy = {}
  for candidate in routing.POLICIES if has_banks else (policy,):
    per_domain, chosen = evaluator(names, policy=candidate)
    by_policy[candidate] = {"domains": per_domain, "average": _average(per_domain),
                            "chosen_banks": chosen}
  return {"unseen": by_policy[policy], "unseen_policies": by_policy}


@dataclasses.dataclass
class Evaluator:
  """Evaluates datasets with a step's state and the banks so far, each image routed by its camera."""
  run: loop.Prepared
  state: object
  banks: list[dict]
  camera_domains: dict[str, int]
  splits: dict
  mesh: object
  eval_config: object

  def __post_init__(self):
    repl, batch_sharding = sharding.replicated(self.mesh), sharding.batch_sharded(self.mesh)
    jit = lambda fn: jax.jit(fn, in_shardings=(repl, batch_sharding), out_shardings=repl)
    # Compiled once for all of this step's evaluations.
    self.features_fn, self.stats_fn = self.run.features_fn, jit(self.run.method.stem_moments)

  def __call__(self, names: list[str], *, policy: str) -> tuple[dict, dict]:
    """{dataset: mAP / rank1 / mINP} and the banks the policy chose for unseen cameras."""
    batch_size = self.eval_config.batch_size
    router = routing.Router(
        state=self.state, banks=self.banks, camera_domains=self.camera_domains,
        features_fn=self.features_fn, stats_fn=self.stats_fn,
        stem_statistics=self.run.method.stem_statistics, policy=policy,
        extract=routing.extractor(mesh=self.mesh, options=self.run.options, batch_size=batch_size))
    per_domain = {}
    for name in names:
      numbers = evaluate_split(self.features_fn, self.state, self.splits[name], mesh=self.mesh,
                               options=self.run.options, batch_size=batch_size,
                               metric=self.eval_config.metric,
                               embed=lambda records, name=name: router.embed(name, records),
                               name=name)
      per_domain[name] = _summary(numbers)
    return per_domain, dict(router.chosen)
