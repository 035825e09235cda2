"""Recipe comparisons on SynthPerson `small`: full training runs of several configs, one JSON.

    python -m benchmarks.recipes --out=benchmarks/results/recipes_synth.json
    python -m benchmarks.recipes --only=bot,sbs --root=/tmp/recipes

Each run is `python -m jreid.main --config=... --workdir=<root>/<name>` as a
user would type it; a run whose `results.json` already exists is read, not
repeated (delete its folder to redo it). The JSON holds every run's test
metrics (percent), wall time and command, and the comparisons the Toolbox
issue asks for:

  - `sbs_minus_bot`: SBS vs bag-of-tricks mAP (configs/sbs.py:synth vs
    configs/baseline.py:synth);
  - `sbs_minus_bot_long`: the same pair with every step count doubled
    (the `synth_long` presets, 1800 steps);
  - `sbs_minus_bot_pretrained`: the pair fine-tuned from person-pretrained
    trunks (`synth_pretrained` presets: BoT from `configs/pretrain_synth.py`,
    SBS from its ResNet-18-IBN-a variant `:ibn`), the regime both recipes are
    made for (FastReID starts them from ImageNet weights), for seeds 0, 1 and 2
    and their mean; `sbs_circle_minus_bot_pretrained` keeps SBS's CircleSoftmax;
  - `bf16_minus_fp32`: the baseline trained with `train.compute_dtype=bfloat16`
    vs float32;
  - `distilled_minus_student`: the ResNet-34 student trained alone vs
    distilled from the baseline model (`configs/distill.py:synth`; the
    teacher is the `bot` run).
"""
import pathlib

from benchmarks.common import run_main, run_selection, write_result

# name -> (config, extra flags); "{root}" is replaced by --root. Order matters:
# the distillation runs need the `bot` run's checkpoint as their teacher.
RUNS = {
    "bot": ("configs/baseline.py:synth", []),
    "sbs": ("configs/sbs.py:synth", []),
    "bot_bf16": ("configs/baseline.py:synth", ["--config.train.compute_dtype=bfloat16"]),
    "student": ("configs/distill.py:synth_student", []),
    "distilled": ("configs/distill.py:synth", ["--config.teacher.checkpoint={root}/bot"]),
    "bot_long": ("configs/baseline.py:synth_long", []),
    "sbs_long": ("configs/sbs.py:synth_long", []),
    "bot_pretrained": ("configs/baseline.py:synth_pretrained", []),
    "sbs_pretrained": ("configs/sbs.py:synth_pretrained", []),
    "bot_pretrained_seed1": ("configs/baseline.py:synth_pretrained", ["--config.seed=1"]),
    "sbs_pretrained_seed1": ("configs/sbs.py:synth_pretrained", ["--config.seed=1"]),
    "bot_pretrained_seed2": ("configs/baseline.py:synth_pretrained", ["--config.seed=2"]),
    "sbs_pretrained_seed2": ("configs/sbs.py:synth_pretrained", ["--config.seed=2"]),
    "sbs_pretrained_circle": ("configs/sbs.py:synth_pretrained", ["--config.loss.softmax=circle"]),
}
COMPARISONS = {
    "sbs_minus_bot": ("sbs", "bot"),
    "sbs_minus_bot_long": ("sbs_long", "bot_long"),
    "sbs_minus_bot_pretrained": ("sbs_pretrained", "bot_pretrained"),
    "sbs_minus_bot_pretrained_seed1": ("sbs_pretrained_seed1", "bot_pretrained_seed1"),
    "sbs_minus_bot_pretrained_seed2": ("sbs_pretrained_seed2", "bot_pretrained_seed2"),
    "sbs_minus_bot_pretrained_mean": (("sbs_pretrained", "sbs_pretrained_seed1", "sbs_pretrained_seed2"),
                                      ("bot_pretrained", "bot_pretrained_seed1", "bot_pretrained_seed2")),
    "sbs_circle_minus_bot_pretrained": ("sbs_pretrained_circle", "bot_pretrained"),
    "bf16_minus_fp32": ("bot_bf16", "bot"),
    "distilled_minus_student": ("distilled", "student"),
}


def run(name: str, root: pathlib.Path) -> dict:
  config, flags = RUNS[name]
  out = run_main(root, name, [f"--config={config}", *(flag.format(root=root) for flag in flags)],
                 tag="recipes")
  test = next(v for v in out["results"].values() if isinstance(v, dict) and "mAP" in v)
  return {"config": config, "flags": flags, "command": out["command"], "wall_s": out["wall_s"],
          "mAP": test.get("mAP"), "rank1": test.get("rank1"), "mINP": test.get("mINP"),
          "results": out["results"]}


def _names(side) -> tuple:
  return (side,) if isinstance(side, str) else tuple(side)


def compare(runs: dict, first, second) -> dict:
  """Mean mAP / rank-1 of the `first` runs minus that of the `second` (a name or several seeds)."""
  mean = lambda side, key: sum(runs[n][key] for n in _names(side)) / len(_names(side))
  return {"runs": [first, second], "mAP_difference": mean(first, "mAP") - mean(second, "mAP"),
          "rank1_difference": mean(first, "rank1") - mean(second, "rank1")}


def main():
  root, names, out = run_selection(RUNS, "/tmp/jreid_recipes")

  runs = {}
  for name in names:
    runs[name] = run(name, root)
    print(f"[recipes] {name}: mAP {runs[name]['mAP']:.2f} rank-1 {runs[name]['rank1']:.2f} "
          f"wall {runs[name]['wall_s']} s", flush=True)
  comparisons = {key: compare(runs, *pair) for key, pair in COMPARISONS.items()
                 if set(_names(pair[0]) + _names(pair[1])) <= set(runs)}
  for key, value in comparisons.items():
    print(f"[recipes] {key}: mAP {value['mAP_difference']:+.2f}", flush=True)
  write_result(out, {"dataset": "synth_small", "runs": runs, "comparisons": comparisons})


if __name__ == "__main__":
  main()
