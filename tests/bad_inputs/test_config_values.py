"""Bad config values, config files, saved configs and tool arguments: one error line, nothing written.

Each case runs the command line in-process (`cli`, tests/bad_inputs/conftest.py)
on the `configs/baseline.py:smoke` run (or another preset's smoke run) with
one bad input. A config value is refused by its section's rule
(`jreid.config_rules`) before the protocol runs, so the workdir is never
created, or, for a finished run, stays byte-identical; no data is read and
nothing is trained, so each case takes milliseconds. The device-count case
needs a fresh process (jax's device count is fixed at start) and is the one
subprocess here.
"""
import copy
import json
import pathlib
import subprocess
import sys

import pytest

from tests.bad_inputs.conftest import cli, error_line, snapshot
from tests.conftest import cpu_env

REPO = pathlib.Path(__file__).resolve().parents[2]
SMOKE = "configs/baseline.py:smoke"

# (preset, override, what the error line must name). Every value the issue lists, then more.
VALUES = [
    (SMOKE, "train.batch_size=0", "config.train.batch_size=0: expected an integer >= 1"),
    (SMOKE, "train.batch_size=-16", "config.train.batch_size=-16"),
    (SMOKE, "train.steps=-3", "config.train.steps=-3: expected an integer >= 0"),
    (SMOKE, "data.num_instances=0", "config.data.num_instances=0"),
    (SMOKE, "data.num_instances=-4", "config.data.num_instances=-4"),
    (SMOKE, "model.backbone.width=0", "config.model.backbone.width=0: expected an integer >= 1"),
    (SMOKE, "model.backbone.width=-8", "config.model.backbone.width=-8"),
    (SMOKE, "model.width=0", "did you mean model.backbone.width?"),  # the key, since moved
    (SMOKE, "data.height=0", "config.data.height=0"),
    (SMOKE, "data.height=-32", "config.data.height=-32"),
    (SMOKE, "train.checkpoint_every=0", "config.train.checkpoint_every=0"),
    (SMOKE, "train.log_every=0", "config.train.log_every=0"),
    (SMOKE, "eval.batch_size=0", "config.eval.batch_size=0"),
    (SMOKE, "train.keep_checkpoints=-1", "config.train.keep_checkpoints=-1"),
    (SMOKE, "train.keep_checkpoints=0", "config.train.keep_checkpoints=0: expected an integer >= 1"),
    (SMOKE, "seed=-1", "config.seed=-1: expected an integer in [0, 4294967295]"),
    (SMOKE, f"seed={2**70}", f"config.seed={2**70}"),
    (SMOKE, "data.mean=(0.5,0.5)", "config.data.mean=(0.5, 0.5): expected a tuple of 3 values"),
    (SMOKE, "data.std=abc", "config.data.std=('abc',)"),
    (SMOKE, "data.std=(0.2,0.2,0)", "config.data.std=(0.2, 0.2, 0)"),
    (SMOKE, "optim.milestones=(3,abc)", "config.optim.milestones="),
    (SMOKE, "optim.milestones=(3,1)", "in increasing order"),
    (SMOKE, "data.blur_kernel=4", "config.data.blur_kernel=4: expected an odd integer >= 1"),
    (SMOKE, "eval.metric=manhattan", "config.eval.metric='manhattan': expected one of 'cosine', 'euclidean'"),
    (SMOKE, "data.num_threads=0", "config.data.num_threads=0"),
    (SMOKE, "data.workers=-1", "config.data.workers=-1"),
    (SMOKE, "data.flip_p=2", "config.data.flip_p=2.0: expected a probability in [0, 1]"),
    (SMOKE, "data.erase_p=-1", "config.data.erase_p=-1.0"),
    (SMOKE, "loss.label_smoothing=2", "config.loss.label_smoothing=2.0"),
    (SMOKE, "data.rrc_scale=(0.5,)", "config.data.rrc_scale=(0.5,): expected a tuple of 0 or 2 values"),
    (SMOKE, "data.rrc_scale=(0.9,0.2)", "config.data.rrc_scale=(0.9, 0.2)"),
    (SMOKE, "data.cutout_size=-5", "config.data.cutout_size=-5"),
    (SMOKE, "optim.weight_decay=1e30", "config.optim.weight_decay=1e+30: expected a number in [0, 1]"),
    (SMOKE, "optim.lr=nan", "config.optim.lr=nan"),
    (SMOKE, "optim.name=adagrad", "config.optim.name='adagrad'"),
    (SMOKE, "optim.groups=(('backbone/.*',-1.0,1.0),)", "config.optim.groups="),
    (SMOKE, "data.color_jitter=(0.1,0.1,0.1)", "config.data.color_jitter="),
    (SMOKE, "eval.every=-1", "config.eval.every=-1"),
    (SMOKE, "eval.query_expansion=aqe", "config.eval.query_expansion='aqe'"),
    (SMOKE, "train.compute_dtype=float16", "config.train.compute_dtype='float16'"),
    (SMOKE, "model.backbone.sa_kernel=4", "config.model.backbone.sa_kernel=4"),
    (SMOKE, "model.backbone.last_stride=3", "config.model.backbone.last_stride=3"),
    (SMOKE, "model.backbone.name=resnet19", "config.model.backbone.name='resnet19'"),
    (SMOKE, "model.pooling=median", "config.model.pooling='median'"),
    (SMOKE, "train.batch_size=18", "config.train.batch_size=18 must be a multiple of config.data.num_instances=4"),
    (SMOKE, "method=supervisd", "config.method='supervisd'"),
    (SMOKE, "init_from=recipe:configs/pretrain_synth.py:nope", "config.init_from=recipe:configs/pretrain_synth.py:nope"),
    (SMOKE, "init_from=recipe:configs/nope.py", "no config file configs/nope.py"),
    ("configs/pcb.py:smoke", "model.num_parts=0", "config.model.num_parts=0"),
    ("configs/mgn.py:smoke", "model.gem_p=0", "config.model.gem_p=0.0: expected a number > 0"),
    ("configs/upreid.py:smoke", "upreid.momentum=2", "config.upreid.momentum=2.0"),
    ("configs/upreid.py:smoke", "upreid.key_bn_groups=3", "upreid.key_bn_groups=3"),
    ("configs/distill.py:smoke", "teacher.temperature=0", "config.teacher.temperature=0.0"),
    ("configs/distill.py:smoke", "teacher.model.backbone.width=0", "config.teacher.model.backbone.width=0"),
    ("configs/dasa.py:smoke", "lifelong.epochs=0", "config.lifelong.epochs=0.0: expected a number > 0"),
    ("configs/dasa.py:smoke", "lifelong.unseen_policy=nearest", "config.lifelong.unseen_policy='nearest'"),
    ("configs/baseline.py:smoke_dg", "dg.mode=leave_two_out", "config.dg.mode='leave_two_out'"),
]


@pytest.mark.parametrize("preset,override,expected", VALUES, ids=[v[1] for v in VALUES])
def test_a_bad_config_value_is_one_line_and_writes_nothing(tmp_path, preset, override, expected):
  workdir = tmp_path / "run"
  outcome = cli("jreid.main", [f"--config={preset}", f"--workdir={workdir}",
                               f"--config.data.root={tmp_path / 'data'}", f"--config.{override}"])
  line = error_line(outcome)
  assert expected in line, line
  assert not workdir.exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize("override", ["train.keep_checkpoints=0", "model.backbone.width=0",
                                      "eval.metric=manhattan", "data.flip_p=2"])
def test_a_bad_value_leaves_a_finished_run_byte_identical(finished_run, override):
  before = snapshot(finished_run)
  root = json.loads((finished_run / "config.json").read_text())["data"]["root"]
  outcome = cli("jreid.main", [f"--config={SMOKE}", f"--workdir={finished_run}",
                               f"--config.data.root={root}", f"--config.{override}"])
  assert override.partition("=")[0] in error_line(outcome)
  assert snapshot(finished_run) == before


def _write(folder: pathlib.Path, name: str, text: str) -> str:
  path = folder / name
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  return str(path)


def _folder(path: pathlib.Path) -> str:
  path.mkdir(parents=True)
  return str(path)


# (how the --config value is made from a scratch folder, what the error line must say)
FILES = [
    (lambda d: "configs/nope.py", "no config file configs/nope.py"),
    (lambda d: "configs", "config file configs is a directory"),
    (lambda d: _folder(d / "a_folder.py"), "a_folder.py is a directory"),
    (lambda d: _write(d, "broken.py", "def get_config(:\n  pass\n"), "broken.py: syntax error at line 1"),
    (lambda d: _write(d, "config.json", '{"seed": 0}'), "config.json is not a Python file"),
    (lambda d: _write(d, "raises.py", "def get_config(arg=''):\n  raise RuntimeError('no GPU here')\n"),
     "raises.py: get_config() failed at line 2: RuntimeError: no GPU here"),
    (lambda d: _write(d, "imports.py", "import not_a_module\n"),
     "imports.py failed to import at line 1: ModuleNotFoundError"),
    (lambda d: _write(d, "none.py", "X = 1\n"), "none.py defines no get_config() function"),
    (lambda d: _write(d, "dict.py", "def get_config():\n  return {}\n"), "returned dict, not an ml_collections.ConfigDict"),
    (lambda d: "configs/baseline.py:nope", "get_config('nope') failed at line"),
    (lambda d: "configs/baseline.py:nope", "unknown preset 'nope' for configs/baseline.py; use ''"),
    (lambda d: "", "names no file"),
]


@pytest.mark.parametrize("make,expected", FILES, ids=[f"file{i}" for i in range(len(FILES))])
def test_a_bad_config_file_is_one_line_naming_it(tmp_path, make, expected):
  spec = make(tmp_path / "files")
  workdir = tmp_path / "run"
  line = error_line(cli("jreid.main", [f"--config={spec}", f"--workdir={workdir}"]))
  assert expected in line, line
  assert not workdir.exists()


@pytest.mark.parametrize("argv,expected", [
    (["--workdir=W"], "flag --config must be given"),
    ([f"--config={SMOKE}"], "--workdir must have a value"),
    ([f"--config={SMOKE}", "--workdir=W", "--config.train.stpes=3"], "did you mean train.steps?"),
    ([f"--config={SMOKE}", "--workdir=W", "--config.model.backbone=resnet34"],
     "config.model.backbone is a section, not a value"),
    ([f"--config={SMOKE}", "--workdir=W", "--config.train.steps=abc"], "--config.train.steps=abc"),
    ([f"--config={SMOKE}", "--workdir=W", "stray"], "unexpected arguments: ['stray']"),
])
def test_command_line_mistakes(tmp_path, argv, expected):
  argv = [a.replace("=W", f"={tmp_path / 'run'}") for a in argv]
  assert expected in error_line(cli("jreid.main", argv))
  assert not (tmp_path / "run").exists()


def test_help_and_many_calls_in_one_process():
  for _ in range(2):  # absl's global FLAGS could be parsed only once; each call has its own
    outcome = cli("jreid.main", ["--help"])
    assert outcome.code == 0 and "--config=FILE[:PRESET]" in outcome.out


@pytest.mark.parametrize("damage,expected", [
    (lambda c: "{not json", "config.json is not valid JSON (Expecting property name"),
    (lambda c: "[1, 2]", "config.json holds a JSON list"),
    (lambda c: _json({k: v for k, v in c.items() if k != "data"}), "lacks the config section 'data'"),
    (lambda c: _json({k: v for k, v in c.items() if k != "loss"}), "config.json: config.loss is missing"),
    (lambda c: _json(_set(c, "model", "backbone", "width", "abc")),
     "config.json: config.model.backbone.width='abc': expected an integer >= 1"),
    (lambda c: _json(_set(c, "data", "mean", [0.5])), "config.json: config.data.mean=[0.5]"),
    (lambda c: _json(dict(c, model=7)), "config.json: config.model is 7, not a section"),
], ids=["invalid_json", "a_list", "no_data", "no_loss", "width_abc", "mean_length", "model_number"])
def test_a_damaged_saved_config_is_one_line_naming_file_and_key(finished_run, damage, expected):
  config_file = finished_run / "config.json"
  config_file.write_text(damage(json.loads(config_file.read_text())))
  before = snapshot(finished_run)
  line = error_line(cli("jreid.tools.visualize", [f"--workdir={finished_run}"]))
  assert str(config_file) in line and expected in line, line
  assert snapshot(finished_run) == before


def _json(config) -> str:
  return json.dumps(config)


def _set(config, *path_and_value):
  """A copy of `config` with the value at `path` replaced."""
  out = copy.deepcopy(config)
  *path, key, value = path_and_value
  section = out
  for part in path:
    section = section[part]
  section[key] = value
  return out


@pytest.mark.parametrize("module,argv,expected", [
    ("jreid.tools.visualize", ["--workdir=W", "--num_queries=-1"], "argument --num_queries: expected an integer >= 1, got -1"),
    ("jreid.tools.visualize", ["--workdir=W", "--topk=0"], "argument --topk: expected an integer >= 1, got 0"),
    ("jreid.tools.visualize", ["--workdir=W", "--seed=x"], "argument --seed: expected an integer >= 0, got 'x'"),
    ("jreid.tools.synth", ["--seed=-1"], "argument --seed: expected an integer >= 0, got -1"),
    ("jreid.tools.export", ["--checkpoint=W", "--out=x.pth", "--step=-2"], "argument --step: expected an integer >= 0"),
])
def test_tool_arguments_out_of_range(module, argv, expected):
  assert expected in error_line(cli(module, argv), prefix=f"python -m {module}")


def test_a_batch_the_device_count_does_not_divide(tmp_path):
  """A fresh process with 3 CPU devices: the smoke batches (16, 32) do not split; nothing is written."""
  workdir = tmp_path / "run"
  env = cpu_env(3)
  code = ("import sys; from tests.bad_inputs.conftest import cli, error_line\n"
          "for override in sys.argv[2:]:\n"
          "  print(error_line(cli('jreid.main', [*sys.argv[1].split(' '), override])))")
  args = f"--config={SMOKE} --workdir={workdir} --config.data.root={tmp_path / 'data'}"
  result = subprocess.run([sys.executable, "-c", code, args, "--config.train.steps=2",
                           "--config.train.batch_size=24"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]
  train_line, eval_line = result.stdout.splitlines()
  assert "config.train.batch_size=16 must be a multiple of the device count 3" in train_line
  assert "config.eval.batch_size=32 must be a multiple of the device count 3" in eval_line
  assert not workdir.exists() and not (tmp_path / "data").exists()
