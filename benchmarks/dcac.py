"""DCAC's ablations at CPU scale: single-source DG on SynthPerson `lreid`, trained on d0.

    python -m benchmarks.dcac --out=benchmarks/results/dcac_synth.json
    python -m benchmarks.dcac --only=baseline,lora --root=/tmp/jreid_dcac

Every run is `python -m jreid.main --config=configs/dcac.py:synth` with one change:

* Tab. 5, the diffusion branch: `baseline` (`dcac.diffusion=none`: ID loss + PCL only),
  `frozen`, `lora` (DCAC itself), `full`, `scratch` (a random UNet, all trained);
* Tab. 7, the condition (with LoRA): `instance`, `class`, and `lora` (correlation-aware);
* seeds 0, 1, 2 for `baseline` and `lora`, the comparison the paper's 1-2 mAP gains rest on
  (the pre-trained CLIP and diffusion stand-ins are shared: recipes, trained once).

Each run is tested on the five domains it never saw (d1, d2, d3, u0, u1: their average is the
DG figure) and on d0's own test set (Tab. 8, `dg.test_sources`). The JSON holds per row the
commands, wall times, per-target and average mAP / rank-1 and the source's, and the claims'
differences. A run whose `results.json` exists is read, not repeated.
"""
import numpy as np

from benchmarks.common import run_main, run_selection, write_result

BASE = ["--config=configs/dcac.py:synth"]
ROWS = {
    "baseline": ["--config.dcac.diffusion=none"],
    "frozen": ["--config.dcac.diffusion=frozen"],
    "lora": [],
    "full": ["--config.dcac.diffusion=full"],
    "scratch": ["--config.dcac.diffusion=scratch"],
    "instance": ["--config.dcac.condition=instance"],
    "class": ["--config.dcac.condition=class"],
}
SEEDED = ("baseline", "lora")
SEEDS = (0, 1, 2)


def _summary(run: dict) -> dict:
  results = run["results"]
  source = next(iter(results.get("sources", {}).values()), {})
  return {"command": run["command"], "wall_s": run["wall_s"],
          "targets": {t: {"mAP": v["mAP"], "rank1": v["rank1"]} for t, v in results["targets"].items()},
          "average_mAP": results["average"]["mAP"], "average_rank1": results["average"]["rank1"],
          "source_mAP": source.get("mAP"), "source_rank1": source.get("rank1")}


def row(root, name: str) -> dict:
  seeds = SEEDS if name in SEEDED else (0,)
  runs = [_summary(run_main(root, name if seed == 0 else f"{name}_seed{seed}",
                            [*BASE, *ROWS[name], f"--config.seed={seed}"], tag="dcac"))
          for seed in seeds]
  out = {"runs": runs}
  for key in ("average_mAP", "average_rank1", "source_mAP", "source_rank1"):
    values = [r[key] for r in runs]
    out[key] = float(np.mean(values))
    if len(values) > 1:
      out[f"{key}_std"] = float(np.std(values))
  return out


def checks(rows: dict) -> dict:
  """The paper's claims as differences of the DG average mAP (positive: the claim holds)."""
  diff = lambda a, b: rows[a]["average_mAP"] - rows[b]["average_mAP"] if a in rows and b in rows else None
  return {"lora_over_baseline": diff("lora", "baseline"), "lora_over_frozen": diff("lora", "frozen"),
          "lora_over_full": diff("lora", "full"), "lora_over_scratch": diff("lora", "scratch"),
          "frozen_over_baseline": diff("frozen", "baseline"),
          "correlation_over_instance": diff("lora", "instance"),
          "correlation_over_class": diff("lora", "class")}


def table(rows: dict) -> str:
  lines = ["| run | DG avg mAP | DG avg R1 | d0 (source) mAP | d0 R1 | wall (s) |",
           "| --- | ---: | ---: | ---: | ---: | ---: |"]
  for name, r in rows.items():
    spread = f" ± {r['average_mAP_std']:.2f}" if "average_mAP_std" in r else ""
    walls = ", ".join(f"{run['wall_s']:.0f}" for run in r["runs"] if run["wall_s"])
    lines.append(f"| {name} | {r['average_mAP']:.2f}{spread} | {r['average_rank1']:.2f} | "
                 f"{r['source_mAP']:.2f} | {r['source_rank1']:.2f} | {walls} |")
  return "\n".join(lines)


def main():
  root, names, out = run_selection(ROWS, "/tmp/jreid_dcac")
  rows = {name: row(root, name) for name in names}
  result = {"benchmark": "dcac_synth", "rows": rows, "checks": checks(rows)}
  print(table(rows))
  print(result["checks"])
  write_result(out, result)


if __name__ == "__main__":
  main()
