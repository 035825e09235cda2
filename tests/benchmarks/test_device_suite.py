"""The device suite's --quick mode on this CPU, so the script a GPU session relies on cannot rot."""
import json
import pathlib
import subprocess
import sys

import pytest

from benchmarks import device_suite

pytestmark = pytest.mark.slow
REPO = pathlib.Path(__file__).resolve().parents[2]


def suite(*args, timeout=300):
  result = subprocess.run([sys.executable, "-m", "benchmarks.device_suite", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result


def test_quick_suite_measures_every_part(tmp_path):
  out = tmp_path / "device.json"
  printed = suite("--quick", f"--out={out}").stdout
  result = json.loads(out.read_text())
  assert sorted(result["parts"]) == sorted(device_suite.BUDGETS)
  failed = {name: part for name, part in result["parts"].items() if part["status"] != "ok"}
  assert not failed, failed
  assert result["device"]["backend"] == "cpu" and result["device"]["device_count"] >= 1
  parts = result["parts"]
  for name in device_suite.PART_ARGS:
    dtypes = device_suite.PART_ARGS[name][1]
    rows = parts[name]["dtypes"]
    assert sorted(rows) == sorted(dtypes.split(","))
    for row in rows.values():
      assert row["images_per_s"] == pytest.approx(device_suite.QUICK["batch"] / row["warm_median_step_s"])
      assert row["first_call_s"] > 0
  assert parts["train_jreid_float32"]["image"] == [device_suite.QUICK["height"], device_suite.QUICK["width"]]
  assert parts["train_vit_jreid"]["model"] == "vit_small width 32 ViT"  # the quick ViT's backbone
  assert parts["evaluation"]["shapes"] == list(device_suite.QUICK["eval"][:3])
  assert parts["rerank"]["finite"]
  assert [(r["threads"], r["workers"]) for r in parts["input_pipeline"]["settings"]] == \
      [tuple(s) for s in device_suite.QUICK["pipeline"]["settings"]]
  assert all(value is not None and value > 0 for value in result["ratios"].values()), result["ratios"]
  assert set(result["ratios"]) == {"input_pipeline_best_over_train_float32"} | {
      f"jreid_over_torch_{kind}_{dtype}" for kind in ("eager", "compile")
      for dtype in ("float32", "bfloat16")}
  assert "device suite (quick) on cpu" in printed and f"wrote {out}" in printed


def test_a_part_past_its_budget_is_reported_and_the_rest_still_lands(tmp_path):
  out = tmp_path / "device.json"
  printed = suite("--quick", "--parts=evaluation,rerank", "--budget=evaluation=0.5", f"--out={out}").stdout
  parts = json.loads(out.read_text())["parts"]
  assert sorted(parts) == ["evaluation", "probe", "rerank"]
  assert parts["evaluation"]["status"] == "timed_out" and parts["evaluation"]["budget_s"] == 0.5
  assert parts["probe"]["status"] == parts["rerank"]["status"] == "ok"
  assert "evaluation                       timed_out" in printed


def test_default_file_name_names_the_device():
  assert device_suite.default_out("NVIDIA H200", quick=False).name == "device_nvidia_h200.json"
  assert device_suite.default_out("cpu", quick=True).name == "device_cpu_quick.json"
