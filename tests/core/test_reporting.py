import json
import os

import numpy as np
import pytest

from jreid.core import reporting


def test_json_writes_are_atomic_and_lines_rewind(tmp_path):
  path = tmp_path / "results.json"
  reporting.write_json_atomic(path, {"x": np.float32(1.5)})
  assert json.loads(path.read_text()) == {"x": 1.5}
  assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left behind
  with pytest.raises(TypeError):
    reporting.write_json_atomic(path, {"x": object()})
  assert json.loads(path.read_text()) == {"x": 1.5}  # a failed write leaves the old file
  log = reporting.JsonLines(tmp_path / "m.jsonl")
  for step in (1, 2, 3, 4):
    log.append({"step": step, "loss": step / 2})
  log.rewind(2)
  assert [e["step"] for e in log.read()] == [1, 2]


def test_progress_line_and_eta():
  progress = reporting.Progress(total_steps=100, start_step=0, batch_size=10)
  line = progress.line(40, {"step": 40, "loss": 1.5, "lr": 3.5e-4}, images_per_second=20.0)
  # 60 steps x 10 images left at 20 img/s = 30 s.
  assert line == "step 40/100 | loss 1.5 lr 0.00035 | 20.0 img/s | ETA 0m30s"
  assert reporting.format_duration(3725) == "1h02m05s"


def test_json_files_get_the_usual_permissions(tmp_path):
  previous = os.umask(0o022)
  try:
    reporting.write_json_atomic(tmp_path / "results.json", {"a": 1})
  finally:
    os.umask(previous)
  assert (tmp_path / "results.json").stat().st_mode & 0o777 == 0o644
