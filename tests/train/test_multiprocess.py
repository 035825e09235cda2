"""Two processes on localhost (launch/local_multiprocess.sh), 2 simulated CPU devices each.

The code path of two hosts: `jax.distributed` with a local coordinator, gloo
collectives, each process its slice of every batch. Checked against one
process with 4 devices (the same global batch over the same 4 devices), and
against itself after both processes are SIGKILLed right after a checkpoint.
The first two runs are the device suite's `train_multiprocess` part
(`benchmarks.multiprocess_step.measure`), whose row is checked here too.

The processes are observed through a `sitecustomize` the test puts first on
their PYTHONPATH: it logs which process writes which results file, and kills
the process right after a chosen checkpoint is saved.
"""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from benchmarks import device_table, multiprocess_step
from jreid.core import checkpoint, sharding
from jreid.errors import ConfigError
from tests.conftest import cpu_env, write_market_tree

pytestmark = pytest.mark.slow
REPO = pathlib.Path(__file__).resolve().parents[2]
MEASURED = ("loss", "loss_ce", "loss_triplet", "lr", "grad_norm")
STEPS = 6

OBSERVER = textwrap.dedent("""
    import os, signal
    if os.environ.get("JREID_TEST_WRITES"):
      from jreid.core import checkpoint, reporting
      write_json, save = reporting.write_json_atomic, checkpoint.Checkpointer.save
      process = os.environ.get("JAX_PROCESS_ID", "0")

      def logged_write(path, content):
        with open(os.environ["JREID_TEST_WRITES"], "a") as log:
          log.write(f"{process} {os.path.abspath(path)}\\n")
        write_json(path, content)

      def save_then_die(self, step, state, data_state):
        save(self, step, state, data_state)
        if step == int(os.environ.get("JREID_TEST_KILL_AFTER", "-1")):
          os.kill(os.getpid(), signal.SIGKILL)  # no clean-up of any kind

      reporting.write_json_atomic, checkpoint.Checkpointer.save = logged_write, save_then_die
    """)


def overrides(root):
  return [f"--config.data.root={root}", "--config.data.train=market1501",
          "--config.data.test=market1501", f"--config.train.steps={STEPS}",
          "--config.train.log_every=1", "--config.train.checkpoint_every=2"]


def observed(hooks, writes):
  """The environment of an observed run: `hooks`' sitecustomize logs its file writes to `writes`."""
  return {"JAX_PLATFORMS": "cpu", "PYTHONPATH": f"{hooks}{os.pathsep}{REPO}",
          "JREID_TEST_WRITES": str(writes)}


def two_processes(workdir, root, hooks, kill_after=None):
  env = dict(os.environ, PYTHON=sys.executable, CPU_DEVICES_PER_PROCESS="2",
             **observed(hooks, f"{workdir}.writes"))
  if kill_after is not None:
    env["JREID_TEST_KILL_AFTER"] = str(kill_after)
  return subprocess.run(["bash", "launch/local_multiprocess.sh", "2", "configs/baseline.py:smoke",
                         str(workdir), *overrides(root)],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def succeeded(result):
  assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
  return result


def measurements(workdir):
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [{k: v for k, v in json.loads(line).items() if k in MEASURED + ("step",)} for line in lines]


def final_state(workdir):
  ckpt, step = checkpoint.open_existing(workdir)
  try:
    return step, ckpt.restore_raw(step)
  finally:
    ckpt.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """{'two': 2 processes, 'one': 1 process x 4 devices (both by the device suite's measurement,
  'spread' its row), 'one_device': 1 x 1, 'killed': 2 processes killed after step 4 then
  restarted, 'interrupted': what the killed start left}."""
  base = tmp_path_factory.mktemp("multiprocess")
  root, hooks = base / "data", base / "hooks"
  write_market_tree(root)
  hooks.mkdir()
  (hooks / "sitecustomize.py").write_text(OBSERVER)
  with pytest.MonkeyPatch.context() as patch:
    for name, value in observed(hooks, base / "writes").items():
      patch.setenv(name, value)
    spread = multiprocess_step.measure("configs/baseline.py:smoke", overrides(root), processes=2,
                                       cpu_devices=2, scratch=str(base), prepare_data=False)
  env = cpu_env(1)
  succeeded(subprocess.run([sys.executable, "-m", "jreid.main", "--config=configs/baseline.py:smoke",
                            f"--workdir={base / 'one_device'}", *overrides(root)],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=600))
  killed = two_processes(base / "killed", root, hooks, kill_after=4)
  interrupted = {"returncode": killed.returncode,
                 "results_written": (base / "killed" / "results.json").exists(),
                 "steps": checkpoint.Checkpointer(base / "killed" / "checkpoints",
                                                  read_only=True).all_steps()}
  succeeded(two_processes(base / "killed", root, hooks))  # the same command resumes
  return {"two": base / "many", "one": base / "one", "one_device": base / "one_device",
          "spread": spread, "writes": base / "writes", "killed": base / "killed",
          "interrupted": interrupted}


def assert_same_losses(first, second):
  assert [e["step"] for e in first] == [e["step"] for e in second] == list(range(1, STEPS + 1))
  for a, b in zip(first, second):
    for key in MEASURED:
      assert abs(a[key] - b[key]) <= 1e-4 * max(1.0, abs(a[key])), (a["step"], key, a[key], b[key])


def test_four_devices_give_the_same_losses_as_one(runs):
  assert_same_losses(measurements(runs["one_device"]), measurements(runs["one"]))


def test_two_processes_give_the_same_losses_as_one_with_four_devices(runs):
  assert_same_losses(measurements(runs["one"]), measurements(runs["two"]))
  results_one = json.loads((runs["one"] / "results.json").read_text())
  results_two = json.loads((runs["two"] / "results.json").read_text())
  for name, numbers in results_one.items():  # each host embedded half of every test batch
    for key in ("mAP", "rank1", "mINP"):
      assert abs(numbers[key] - results_two[name][key]) <= 1e-3, (name, key)


def test_process_zero_alone_writes_the_run_files_and_one_checkpoint(runs):
  writes = [line.split(" ", 1) for line in runs["writes"].read_text().splitlines()]
  writes = [(process, pathlib.Path(path)) for process, path in writes if path.startswith(f"{runs['two']}/")]
  processes, files = [process for process, _ in writes], [path.name for _, path in writes]
  assert set(processes) == {"0"}, writes  # results, config and checkpoint digests alike
  assert files.count("config.json") == files.count("results.json") == 1
  assert files.count(checkpoint.DIGEST_FILE) == 3  # one per saved step
  folder = runs["two"] / "checkpoints"
  assert sorted(int(p.name) for p in folder.iterdir()) == [2, 4, 6]
  for step in (2, 4, 6):
    files = [p.relative_to(folder) for p in (folder / str(step)).rglob("*")]
    assert (folder / str(step) / checkpoint.DIGEST_FILE).is_file()
    # the replicated state is written once: no second process's copy of its arrays
    assert not [f for f in files if "process_1" in str(f)], files
    assert checkpoint.Checkpointer(folder, read_only=True).check(step)


def test_sigkill_of_both_processes_then_a_restart_resumes_exactly(runs):
  interrupted = runs["interrupted"]
  assert interrupted["returncode"] != 0 and not interrupted["results_written"]
  assert interrupted["steps"] == [2, 4]
  assert measurements(runs["killed"]) == measurements(runs["two"])
  step, state = final_state(runs["killed"])
  reference_step, reference = final_state(runs["two"])
  assert step == reference_step == STEPS
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(state)[0], jax.tree.leaves(reference)):
    assert np.array_equal(a, b), jax.tree_util.keystr(path)
  assert (json.loads((runs["killed"] / "results.json").read_text())
          == json.loads((runs["two"] / "results.json").read_text()))


def test_process_numbers_come_from_the_environment(monkeypatch):
  monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
  monkeypatch.setenv("JAX_PROCESS_ID", "3")
  assert sharding.process_layout() == {"num_processes": 4, "process_id": 3}
  monkeypatch.delenv("JAX_NUM_PROCESSES")
  assert sharding.process_layout() == {"process_id": 3}  # the rest from SLURM / a TPU pod
  monkeypatch.setenv("JAX_PROCESS_ID", "first")
  with pytest.raises(ConfigError, match="JAX_PROCESS_ID='first' must be a whole number"):
    sharding.process_layout()


def test_the_device_suite_row_is_these_two_runs(runs):
  """`train_multiprocess` (benchmarks/multiprocess_step.py) on a GPU machine: here its CPU form."""
  spread = runs["spread"]
  assert (spread["processes"], spread["devices"]) == (2, "cpu x4")
  assert spread["one_process"]["losses"] == [e["loss"] for e in measurements(runs["one"])]
  assert spread["multi_process"]["losses"] == [e["loss"] for e in measurements(runs["two"])]
  assert spread["max_loss_diff"] == max(abs(a - b) for a, b in zip(spread["one_process"]["losses"],
                                                                   spread["multi_process"]["losses"]))
  assert spread["max_loss_diff"] <= 1e-4 * max(spread["one_process"]["losses"])
  assert spread["scaling"] == pytest.approx(spread["multi_process"]["images_per_s"]
                                            / spread["one_process"]["images_per_s"])
  printed = device_table.table({"quick": True, "parts": {"train_multiprocess": {
      "status": "ok", "budget_s": 240.0, "wall_s": 1.0, **spread}}, "ratios": {}})
  assert "train_multiprocess               2 processes " in printed and "(cpu x4), max loss diff" in printed
