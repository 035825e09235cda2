"""launch/colab.ipynb: stripped as committed, and run whole, headless, at smoke scale.

The notebook runs in a real kernel (nbclient + ipykernel's `python3` spec,
which starts this interpreter) with its parameters set through the
`JREID_NOTEBOOK_*` variables its parameters cell reads. Each output is then
checked against the files the runs wrote: the results table against
results.json, the progress lines against metrics.jsonl, the rank list
against the PNG on disk, the export against the tensor count it reports.
"""
import ast
import base64
import io
import json
import os
import pathlib
import re
import sys
import types

import nbformat
import pytest
import torch
from nbclient import NotebookClient
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "launch" / "colab.ipynb"
PNG = "image/png"


def test_committed_notebook_is_stripped():
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(notebook)
  code = [cell for cell in notebook.cells if cell.cell_type == "code"]
  assert code
  for cell in code:
    assert cell.outputs == [] and cell.execution_count is None, f"cell {cell.id} keeps its outputs"
    assert "execution" not in cell.metadata, f"cell {cell.id} keeps its run's timestamps"
  assert [cell.metadata.get("tags") for cell in code].count(["parameters"]) == 1


def install_cell_function(name: str, devices: list[str]):
  """A function the install cell defines, compiled from the committed cell by itself, seeing
  `devices` as what `/dev/accel*` matches."""
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  source = next(cell.source for cell in notebook.cells if f"def {name}(" in cell.source)
  tree = ast.parse(source)
  tree.body = [node for node in tree.body if isinstance(node, (ast.Import, ast.FunctionDef))]
  namespace = {}
  exec(compile(tree, NOTEBOOK.name, "exec"), namespace)
  namespace["glob"] = types.SimpleNamespace(glob=lambda pattern: devices if pattern == "/dev/accel*" else [])
  return namespace[name]


def fake_nvidia_smi(folder: pathlib.Path, exit_code: int) -> str:
  folder.mkdir()
  script = folder / "nvidia-smi"
  script.write_text(f"#!/bin/sh\nexit {exit_code}\n")
  script.chmod(0o755)
  return str(folder)


def test_install_cell_picks_the_jax_build_of_the_runtime(tmp_path, monkeypatch):
  pick = install_cell_function("jax_for_this_runtime", devices=[])
  for name in ("COLAB_TPU_ADDR", "TPU_NAME"):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
  assert pick() == "jax"
  monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path / "no_gpu", 9))  # the tool, but no GPU answers
  assert pick() == "jax"
  monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path / "gpu", 0))
  assert pick() == "jax[cuda12]"
  assert install_cell_function("jax_for_this_runtime", devices=["/dev/accel0"])() == "jax[tpu]"
  monkeypatch.setenv("TPU_NAME", "local")
  assert pick() == "jax[tpu]"
  monkeypatch.delenv("TPU_NAME")
  monkeypatch.setenv("COLAB_TPU_ADDR", "10.0.0.2:8470")
  assert pick() == "jax[tpu]"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
  """The notebook after a whole run, and the folders it wrote to."""
  tmp = tmp_path_factory.mktemp("notebook")
  folders = {"WORKDIR": tmp / "runs", "DATA_ROOT": tmp / "data", "MARKET_ROOT": tmp / "no_market"}
  env = dict(os.environ, JAX_PLATFORMS="cpu", JREID_NOTEBOOK_SMOKE="1",
             PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
             **{f"JREID_NOTEBOOK_{key}": str(path) for key, path in folders.items()})
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  client = NotebookClient(notebook, kernel_name="python3", timeout=600,
                          resources={"metadata": {"path": str(REPO)}})
  client.execute(env=env)
  return notebook, folders


def cell_with(notebook, text: str):
  """The code cell whose source contains `text`."""
  matches = [cell for cell in notebook.cells if cell.cell_type == "code" and text in cell.source]
  assert len(matches) == 1, text
  return matches[0]


def stdout(cell) -> str:
  return "".join(out.text for out in cell.outputs if out.output_type == "stream" and out.name == "stdout")


def test_every_cell_ran_without_error(executed):
  notebook, _ = executed
  for cell in notebook.cells:
    if cell.cell_type == "code":
      assert cell.execution_count is not None
      assert not [out for out in cell.outputs if out.output_type == "error"], cell.source


def test_kernel_used_this_checkout_and_python_without_installing(executed):
  notebook, _ = executed
  printed = stdout(cell_with(notebook, "jax_for_this_runtime()"))
  assert f"jreid from {REPO / 'jreid'}, Python {sys.executable}," in printed
  assert "CpuDevice" in printed


def test_baseline_progress_lines_match_its_metrics(executed):
  notebook, folders = executed
  printed = stdout(cell_with(notebook, "jreid.train(baseline_config"))
  logged = [json.loads(line) for line in (folders["WORKDIR"] / "baseline" / "metrics.jsonl").open()]
  progress = re.findall(r"^step (\d+)/\d+ \| loss ([0-9.]+)", printed, re.MULTILINE)
  assert [int(step) for step, _ in progress] == [entry["step"] for entry in logged]
  assert [float(loss) for _, loss in progress] == pytest.approx([e["loss"] for e in logged], abs=1e-3)


def test_results_table_equals_results_json(executed):
  notebook, folders = executed
  results = json.loads((folders["WORKDIR"] / "baseline" / "results.json").read_text())
  outputs = [out for out in cell_with(notebook, "results.json").outputs if "data" in out]
  table = [out.data["text/markdown"] for out in outputs if "text/markdown" in out.data]
  assert len(table) == 1
  header, _, *rows = [line.strip("|").split("|") for line in table[0].splitlines()]
  header = [name.strip() for name in header]
  assert header == ["test set", "rank-1", "rank-5", "rank-10", "mAP", "mINP"]
  assert {row[0].strip() for row in rows} == set(results)
  for name, *values in rows:
    expected = results[name.strip()]
    shown = dict(zip(header[1:], map(float, values)))
    for label, key in [("rank-1", "rank1"), ("rank-5", "rank5"), ("rank-10", "rank10"),
                       ("mAP", "mAP"), ("mINP", "mINP")]:
      assert shown[label] == pytest.approx(expected[key], abs=0.005), label


def images(cell) -> list[bytes]:
  return [base64.b64decode(out.data[PNG]) for out in cell.outputs if PNG in out.get("data", {})]


def test_rank_list_is_the_png_the_tool_wrote(executed):
  notebook, folders = executed
  shown = images(cell_with(notebook, "visualize_tool.main"))
  written = sorted((folders["WORKDIR"] / "baseline" / "visualize" / "synth_tiny").glob("rank_list_*.png"))
  assert len(shown) == 1 and len(written) == 2
  assert shown[0] == written[0].read_bytes()


def test_lifelong_curve_is_drawn_after_both_domains(executed):
  notebook, folders = executed
  cell = cell_with(notebook, "lifelong_config = load_config")
  shown = images(cell)
  assert len(shown) == 1
  width, height = Image.open(io.BytesIO(shown[0])).size
  assert width > 200 and height > 100
  results = json.loads((folders["WORKDIR"] / "lifelong" / "results.json").read_text())
  assert [step["step"] for step in results["steps"]] == results["domains"]
  assert len(results["domains"]) == 2 and results["strategy"] == "dasa"
  assert "after synth_tiny_multi/d1:" in stdout(cell)


def test_export_file_loads_in_torch(executed):
  notebook, folders = executed
  printed = stdout(cell_with(notebook, "export_tool.main"))
  export = folders["WORKDIR"] / "baseline.pth"
  state_dict = torch.load(export, weights_only=True)["model"]  # FastReID's Checkpointer's key
  assert f"wrote {len(state_dict)} tensors" in printed
  assert f"{export}: " in printed and "backbone.conv1.weight" in state_dict


def test_market_cell_without_data_says_what_it_would_run(executed):
  notebook, folders = executed
  printed = stdout(cell_with(notebook, "Market-1501-v15.09.15"))
  assert f"No Market-1501 at {folders['MARKET_ROOT'] / 'Market-1501-v15.09.15'}" in printed
  assert (f"python -m jreid.main --config=configs/baseline.py --workdir={folders['WORKDIR'] / 'bot_market'} "
          f"--config.data.root={folders['MARKET_ROOT']}") in printed
  assert not (folders["WORKDIR"] / "bot_market").exists()
