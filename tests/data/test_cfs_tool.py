"""`python -m jreid.tools.cfs`: a pool ranked by the cosine of two runs' features, written as a list
that `data.train_subset` reads back."""
import numpy as np

from jreid.data import datasets, subsets
from tests.bad_inputs.conftest import cli, error_line


def test_the_ranked_list_scores_each_pool_image_by_the_two_runs_features(smoke_run, synth_root,
                                                                         tmp_path):
  out = tmp_path / "cfs.txt"
  done = cli("jreid.tools.cfs", [f"--source={smoke_run}", f"--target={smoke_run}",
                                 "--pool=synth_tiny", f"--out={out}"])
  assert done.code == 0, done.err
  records = datasets.get("synth_tiny", str(synth_root)).train
  lines = [line.split("\t") for line in out.read_text().splitlines()]
  assert len(lines) == len(records)
  assert {name for name, _ in lines} == {subsets.relative_to_root(r.path, synth_root) for r in records}
  np.testing.assert_allclose([float(score) for _, score in lines], 1.0, atol=1e-5)  # same run twice


def test_a_bad_pool_is_one_line(smoke_run, tmp_path):
  line = error_line(cli("jreid.tools.cfs", [f"--source={smoke_run}", f"--target={smoke_run}",
                                            "--pool=no_such_set", f"--out={tmp_path / 'x.txt'}"]),
                    prefix="jreid.tools.cfs")
  assert "no_such_set" in line and not (tmp_path / "x.txt").exists()
