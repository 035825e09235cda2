"""Every experiment file in configs/: each preset builds its method, and each smoke preset trains.

A preset that names an unknown key, backbone, loss or schedule fails here,
not hours into a GPU run.
"""
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from benchmarks.common import load_config
from jreid import methods, protocols
from jreid.train import update
from tests.conftest import assert_finished_run

REPO = pathlib.Path(__file__).resolve().parents[2]
# config file -> its presets; a new config or preset must be added here.
PRESETS = {
    "configs/baseline.py": ("", "r50_ibn", "synth", "synth_long", "synth_pretrained", "synth_d0", "synth_d0_short",
                            "synth_dg", "smoke", "smoke_dg"),
    "configs/sbs.py": ("", "synth", "synth_long", "synth_pretrained", "smoke"),
    "configs/distill.py": ("", "teacher", "synth", "synth_student", "smoke"),
    "configs/mgn.py": ("", "synth", "smoke"),
    "configs/pcb.py": ("", "synth", "smoke"),
    "configs/pretrain_synth.py": ("", "ibn", "clip", "smoke"),
    "configs/dcac.py": ("", "duke", "msmt", "cuhk03", "multi", "synth", "smoke"),
    "configs/ldm_synth.py": ("", "vae", "smoke_vae", "smoke"),
    "configs/dasa.py": ("", "order2", "synth", "smoke"),
    "configs/vit.py": ("", "vit_base", "no_ics", "synth", "synth_d0", "synth_d0_patchify", "smoke"),
    "configs/transreid_ssl.py": ("", "synth", "synth_patchify", "smoke"),
    "configs/cluster_contrast.py": ("", "msmt", "synth", "smoke"),
    "configs/upreid.py": ("", "moco", "cc", "icc", "no_hm", "synth", "synth_moco", "synth_cc",
                          "synth_icc", "synth_no_hm", "smoke", "smoke_moco", "smoke_cc", "smoke_icc",
                          "smoke_no_hm"),
}
# Smoke presets trained in other tests: those that need another run first, and the baseline
# (the session's `smoke_run` fixture, checked by tests/train/test_end_to_end.py).
TRAINED_ELSEWHERE = {"configs/distill.py": "tests/methods/test_distill_end_to_end.py",
                     "configs/dasa.py": "tests/protocols/test_lifelong.py",
                     "configs/baseline.py": "tests/train/test_end_to_end.py",
                     "configs/cluster_contrast.py": "tests/train/test_cluster_contrast_resume.py",
                     "configs/ldm_synth.py": "tests/methods/test_latent_diffusion_runs.py",
                     "configs/dcac.py": "tests/bad_inputs/test_dcac_inputs.py"}


def test_every_config_file_is_listed():
  assert sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").glob("*.py")) == sorted(PRESETS)


@pytest.mark.parametrize("spec", [f"{path}:{arg}" if arg else path
                                  for path, args in PRESETS.items() for arg in args])
def test_preset_builds_its_method(spec):
  config = load_config(spec)
  protocols.check(config)  # its protocol's section, and no other's
  if config.method == "distill":
    config.teacher.checkpoint = "/not/read/when/building"
  if config.method == "dcac" and config.dcac.weights != "random":  # SD-1.5 / recipe: not read here
    config.dcac.update(weights="random", preset="tiny")
  method = methods.build(config, 7, update.factory(config, config.train.steps or 10))
  images = jnp.zeros((1, config.data.height, config.data.width, 3))
  state = jax.eval_shape(method.init, jax.random.key(0), images)
  assert jax.tree.leaves(state.params)
  path = spec.partition(":")[0]
  if not spec.partition(":")[2].startswith("smoke"):  # real and synth presets document their command
    assert f"python -m jreid.main --config={spec} " in (REPO / path).read_text()


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p, args in PRESETS.items()
                                  if "smoke" in args and p not in TRAINED_ELSEWHERE])
def test_smoke_preset_trains_and_evaluates(tmp_path, path, synth_root):
  workdir = tmp_path / "run"
  result = subprocess.run([sys.executable, "-m", "jreid.main", f"--config={path}:smoke",
                           f"--workdir={workdir}", f"--config.data.root={synth_root}"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert_finished_run(workdir)
