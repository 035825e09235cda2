"""TransReID-SSL's claims at CPU scale: DINO on SynthPerson's pool, then fine-tuning on a held-out domain.

    python -m benchmarks.transreid_ssl --out=benchmarks/results/transreid_ssl_synth.json
    python -m benchmarks.transreid_ssl --only=random_ics,dino_ics --root=/tmp/jreid_transreid_ssl

Pre-training (`python -m jreid.main --config=configs/transreid_ssl.py:synth[_patchify]`, labels
unused): DINO on `synth_lreid/pool` (3,698 images) with a 4-block, 192-wide ViT at 64x32, 2
global + 4 local crops, 6 epochs, with the ICS stem (`dino_ics`) or the plain patchify stem
(`dino_patchify`), and with the ICS stem on half of the pool: the CFS half (`dino_cfs50`:
`python -m jreid.tools.cfs` with `dino_ics` as the source proxy and its supervised fine-tuning
on d0 as the target proxy, the 50% most similar kept) or a random half (`dino_random50`: the
same list shuffled with seed 0). The same epochs for every pool, so a half pool is half the
steps.

Fine-tuning on `synth_lreid/d0`, a domain the pool does not hold:
* supervised (`configs/vit.py:synth_d0[_patchify]`, TransReID-SSL's recipe at a CPU budget:
  150 steps of batch 64, lr 0.01) from each pre-training (`--config.init_from`, which takes the
  DINO teacher's backbone) or from scratch (`random_ics`, `random_patchify`); the rows the
  claims compare run with seeds 0, 1, 2 (the same pre-trained trunk);
* unsupervised (`configs/cluster_contrast.py:synth`: 5 epochs of 30 steps, d0's labels unused)
  from `dino_ics` (`cc_dino`) or from scratch (`cc_random`), and UDA (`cc_uda`) from a source
  model (`dino_ics` fine-tuned with labels on `synth_lreid/d1`, the `configs/vit.py:synth_d0`
  run with `--config.data.train=synth_lreid/d1`; its d0 mAP is the direct transfer); mAP
  against d0's labelled test set.

The JSON holds per row the commands, wall times, d0 mAP / rank-1 / mINP (and, for pre-trained
rows, the DINO teacher's own d0 mAP before any fine-tuning), and the claims' differences. A run
whose `results.json` exists is read, not repeated; a run that fails is recorded with its exit
code (cluster contrast from scratch can find no cluster: `jreid.errors.ClusteringError`).
"""
import pathlib
import subprocess
import sys

import numpy as np

from benchmarks.common import REPO, run_main, run_selection, write_result

DOMAIN = "synth_lreid/d0"
POOL = "synth_lreid/pool"
PRETRAIN = {"dino_ics": "configs/transreid_ssl.py:synth",
            "dino_patchify": "configs/transreid_ssl.py:synth_patchify",
            "dino_cfs50": "configs/transreid_ssl.py:synth",
            "dino_random50": "configs/transreid_ssl.py:synth"}
FINETUNE = {"random_ics": ("configs/vit.py:synth_d0", None),
            "random_patchify": ("configs/vit.py:synth_d0_patchify", None),
            "dino_ics": ("configs/vit.py:synth_d0", "dino_ics"),
            "dino_patchify": ("configs/vit.py:synth_d0_patchify", "dino_patchify"),
            "dino_cfs50": ("configs/vit.py:synth_d0", "dino_cfs50"),
            "dino_random50": ("configs/vit.py:synth_d0", "dino_random50")}
CLUSTER = {"cc_dino": "dino_ics", "cc_random": None, "cc_uda": "source_d1"}
# UDA's source model: the DINO trunk fine-tuned with labels on another domain (d1), whose own
# d0 mAP is the direct transfer that cluster contrast on d0 should improve.
SOURCE = ["--config=configs/vit.py:synth_d0", "--config.data.train=synth_lreid/d1"]
ROWS = (*FINETUNE, *CLUSTER)
SEEDED_ROWS, SEEDS = ("random_ics", "dino_ics", "dino_cfs50", "dino_random50"), (0, 1, 2)
FRACTION = 0.5


def _metrics(results: dict) -> dict:
  numbers = results[DOMAIN]
  return {"mAP": numbers["mAP"], "rank1": numbers["rank1"], "mINP": numbers["mINP"]}


def _summary(run: dict) -> dict:
  return {"command": run["command"], "wall_s": run["wall_s"], **_metrics(run["results"])}


def _tolerant(root, name, args) -> dict:
  try:
    return _summary(run_main(root, name, args, tag="transreid_ssl"))
  except subprocess.CalledProcessError as err:
    return {"command": " ".join(err.cmd[1:]), "failed": f"exit code {err.returncode}"}


def subset_lists(root: pathlib.Path) -> dict:
  """The CFS ranked list (source `dino_ics`, target its d0 fine-tuning) and its shuffle."""
  cfs = root / "cfs_pool.txt"
  if not cfs.exists():
    run_main(root, "pretrain_dino_ics", [f"--config={PRETRAIN['dino_ics']}"], tag="transreid_ssl")
    run_main(root, "finetune_dino_ics", [f"--config={FINETUNE['dino_ics'][0]}",
                                         f"--config.init_from={root / 'pretrain_dino_ics'}"],
             tag="transreid_ssl")
    command = ["-m", "jreid.tools.cfs", f"--source={root / 'pretrain_dino_ics'}",
               f"--target={root / 'finetune_dino_ics'}", f"--pool={POOL}", f"--out={cfs}"]
    print(f"[transreid_ssl] cfs: {' '.join(command)}", flush=True)
    subprocess.run([sys.executable, *command], check=True, cwd=REPO)
  shuffled = root / "random_pool.txt"
  if not shuffled.exists():
    lines = cfs.read_text().splitlines(keepends=True)
    order = np.random.default_rng(0).permutation(len(lines))
    shuffled.write_text("".join(lines[i] for i in order))
  return {"dino_cfs50": cfs, "dino_random50": shuffled}


def pretrain(root: pathlib.Path, name: str) -> dict:
  args = [f"--config={PRETRAIN[name]}"]
  if name in ("dino_cfs50", "dino_random50"):
    lists = subset_lists(root)
    args += [f"--config.data.train_subset={lists[name]}",
             f"--config.data.train_subset_fraction={FRACTION}"]
  run = run_main(root, f"pretrain_{name}", args, tag="transreid_ssl")
  return {"command": run["command"], "wall_s": run["wall_s"],
          "d0_before_finetuning": _metrics(run["results"])}


def row(name: str, root: pathlib.Path, done: dict) -> dict:
  out = {}
  source = FINETUNE[name][1] if name in FINETUNE else CLUSTER[name]
  init = []
  if source == "source_d1":
    if "dino_ics" not in done:
      done["dino_ics"] = pretrain(root, "dino_ics")
    out["pretrain"] = done["dino_ics"]
    out["source"] = _tolerant(root, "finetune_source_d1",
                              [*SOURCE, f"--config.init_from={root / 'pretrain_dino_ics'}"])
    init = [f"--config.init_from={root / 'finetune_source_d1'}"]
  elif source:
    if source not in done:
      done[source] = pretrain(root, source)
    out["pretrain"] = done[source]
    init = [f"--config.init_from={root / f'pretrain_{source}'}"]
  if name in CLUSTER:
    out["finetune"] = _tolerant(root, name, ["--config=configs/cluster_contrast.py:synth", *init])
    return out
  config = FINETUNE[name][0]
  out["finetune"] = _tolerant(root, f"finetune_{name}", [f"--config={config}", *init])
  if name in SEEDED_ROWS:
    seeds = {0: out["finetune"]}
    for seed in SEEDS[1:]:
      seeds[seed] = _tolerant(root, f"finetune_{name}_seed{seed}",
                              [f"--config={config}", *init, f"--config.seed={seed}"])
    out["finetune_seeds"] = seeds
    if all("mAP" in r for r in seeds.values()):
      out["finetune_mean"] = {k: float(np.mean([r[k] for r in seeds.values()]))
                              for k in ("mAP", "rank1", "mINP")}
  return out


def _map(rows, name, key="finetune_mean"):
  r = rows.get(name, {})
  return (r.get(key) or r.get("finetune", {})).get("mAP")


def checks(rows: dict) -> dict:
  pairs = {"dino_ics_minus_random_ics": ("dino_ics", "random_ics"),
           "ics_minus_patchify_dino": ("dino_ics", "dino_patchify"),
           "cfs50_minus_full_pool": ("dino_cfs50", "dino_ics"),
           "cfs50_minus_random50": ("dino_cfs50", "dino_random50"),
           "cc_dino_minus_cc_random": ("cc_dino", "cc_random")}
  out = {}
  if "cc_uda" in rows and "mAP" in rows["cc_uda"].get("source", {}) and _map(rows, "cc_uda"):
    out["cc_uda_minus_direct_transfer"] = _map(rows, "cc_uda") - rows["cc_uda"]["source"]["mAP"]
  for key, (a, b) in pairs.items():
    if _map(rows, a) is not None and _map(rows, b) is not None:
      out[key] = _map(rows, a) - _map(rows, b)
  return out


def table(rows: dict) -> str:
  lines = [f"{'row':<16}{'mAP':>8}{'R-1':>8}{'seeds mAP':>24}{'mean':>8}{'teacher mAP':>13}"
           f"{'pretrain s':>12}{'finetune s':>12}"]
  nan = float("nan")
  for name, r in rows.items():
    fine, pre = r["finetune"], r.get("pretrain", {})
    seeds = r.get("finetune_seeds", {})
    per_seed = " / ".join(f"{s.get('mAP', nan):.2f}" for s in seeds.values()) or "-"
    lines.append(f"{name:<16}{fine.get('mAP', nan):>8.2f}{fine.get('rank1', nan):>8.2f}"
                 f"{per_seed:>24}{r.get('finetune_mean', {}).get('mAP', nan):>8.2f}"
                 f"{pre.get('d0_before_finetuning', {}).get('mAP', nan):>13.2f}"
                 f"{(pre.get('wall_s') or nan):>12.0f}{(fine.get('wall_s') or nan):>12.0f}"
                 + (f"  {fine['failed']}" if "failed" in fine else ""))
  return "\n".join(lines)


def main():
  root, names, out = run_selection(ROWS, "/tmp/jreid_transreid_ssl")
  done: dict = {}
  rows = {}
  # The CFS list needs dino_ics's fine-tuning: run it before the half pools.
  for name in sorted(names, key=lambda n: n in ("dino_cfs50", "dino_random50")):
    rows[name] = row(name, root, done)
  rows = {name: rows[name] for name in names}
  found = checks(rows)
  print(table(rows), flush=True)
  print(found, flush=True)
  write_result(out, {"pool": POOL, "domain": DOMAIN, "fraction": FRACTION, "rows": rows,
                     "checks": found})


if __name__ == "__main__":
  main()
