"""The device suite's --quick mode on this CPU, so the script a GPU session relies on cannot rot."""
import json
import pathlib
import subprocess
import sys

import pytest

from benchmarks import device_suite

REPO = pathlib.Path(__file__).resolve().parents[2]


def suite(*args, timeout=600):
  result = subprocess.run([sys.executable, "-m", "benchmarks.device_suite", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result


# tests/train/test_multiprocess.py runs the multi-process part's measurement on its own runs
# (2 processes x 2 CPU devices vs 1 x 4) and checks its row: run here too it would cost two cold
# multi-process compiles more.
MEASURED_ELSEWHERE = ("train_multiprocess",)


@pytest.mark.slow
def test_quick_suite_measures_every_part(tmp_path):
  out = tmp_path / "device.json"
  parts = [name for name in device_suite.BUDGETS if name not in MEASURED_ELSEWHERE]
  printed = suite("--quick", f"--parts={','.join(parts)}", f"--out={out}").stdout
  result = json.loads(out.read_text())
  assert sorted(result["parts"]) == sorted(parts)
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
  # DINO on configs/transreid_ssl.py:smoke: ICS ViT width 16, 2 global 32x16 + 2 local 16x8 crops.
  dino = parts["train_dino_jreid"]
  assert dino["model"] == "vit_small_ics width 16 depth 2 DINO out_dim 32"
  assert dino["crops"] == {"global": [2, 32, 16], "local": [2, 16, 8]} and dino["crops_per_image"] == 4
  assert list(dino["dtypes"]) == device_suite.QUICK["dino"]["dtypes"].split(",") == ["float32"]
  for row in dino["dtypes"].values():
    assert row["images_per_s"] == pytest.approx(16 / row["warm_median_step_s"])
    assert row["crops_per_s"] == pytest.approx(4 * 16 / row["warm_median_step_s"])
    assert row["first_call_s"] > 0
  dcac = parts["train_dcac_jreid"]  # configs/dcac.py:smoke's models, LoRA, batch 16
  assert (dcac["scale"], dcac["variant"], dcac["batch"]) == ("tiny", "lora", 16)
  assert dcac["images_per_s"] == pytest.approx(1000 * 16 / dcac["step_ms"])
  assert dcac["trainable_params"] > 0 and dcac["first_call_s"] > 0
  onnx = parts["onnx_runtime"]  # the quick ResNet-18 exported, run by onnxruntime on the CPU
  assert (onnx["backbone"], onnx["provider"], onnx["batch"]) == ("resnet18", "CPUExecutionProvider", 16)
  assert onnx["max_abs_diff"] <= 1e-4 and onnx["onnxruntime"]["images_per_s"] > 0
  assert parts["evaluation"]["shapes"] == list(device_suite.QUICK["eval"][:3])
  assert parts["rerank"]["finite"]
  assert [(r["threads"], r["workers"]) for r in parts["input_pipeline"]["settings"]] == \
      [tuple(s) for s in device_suite.QUICK["pipeline"]["settings"]]
  assert all(value is not None and value > 0 for value in result["ratios"].values()), result["ratios"]
  assert set(result["ratios"]) == {"input_pipeline_best_over_train_float32"} | {
      f"jreid_over_torch_{kind}_{dtype}" for kind in ("eager", "compile")
      for dtype in ("float32", "bfloat16")}
  assert "device suite (quick) on cpu" in printed and f"wrote {out}" in printed


@pytest.mark.slow
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


ROW = {"first_call_s": 70.0, "warm_median_step_s": 0.5, "images_per_s": 128.0, "crops_per_s": 1280.0,
       "peak_device_bytes": 3 * 2**30}


def test_a_part_killed_after_one_dtype_keeps_that_row(monkeypatch, tmp_path):
  """The child printed bfloat16's row, then was killed mid-way through float32's line."""
  printed = (json.dumps({"batch": 64, "dtypes": {"bfloat16": ROW}}) + "\n" + '{"batch": 64, "dty').encode()

  def killed(command, **kwargs):
    raise subprocess.TimeoutExpired(command, kwargs["timeout"], output=printed)

  monkeypatch.setattr(device_suite.subprocess, "run", killed)
  args = device_suite.argparse.Namespace(quick=True)
  part = device_suite.launch("train_dino_jreid", args, tmp_path, 150.0)
  assert part["status"] == "timed_out" and part["budget_s"] == 150.0
  assert part["partial"] == {"batch": 64, "dtypes": {"bfloat16": ROW}}
  lines = device_suite.table({"quick": False, "parts": {"train_dino_jreid": part}, "ratios": {}})
  assert "train_dino_jreid                 timed_out after" in lines
  assert "bfloat16      128.0 img/s  first call   70.0 s  peak 3.00 GiB  (1280 crops/s)" in lines


def test_last_json_skips_a_cut_line_and_reads_bytes_or_text():
  assert device_suite.last_json(b'noise\n{"a": 1}\n{"a": 2') == {"a": 1}
  assert device_suite.last_json('{"a": 1}\nwarning\n{"a": 2}\n') == {"a": 2}
  assert device_suite.last_json(None) is None and device_suite.last_json(b"no json here") is None
