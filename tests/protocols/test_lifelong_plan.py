"""The lifelong protocol's plan and per-step configs, and its config checks (no training)."""
import pytest

from benchmarks.common import load_config
from jreid.errors import ConfigError
from jreid.protocols import lifelong
from jreid.train import durations


def _config(**lifelong_overrides):
  config = load_config("configs/dasa.py:synth")
  config.lifelong.update(lifelong_overrides)
  return config


def test_one_step_per_domain_or_one_joint_step():
  steps = lifelong.plan(_config())
  assert [s.datasets for s in steps] == [(f"synth_lreid/d{i}",) for i in range(4)]
  joint = lifelong.plan(_config(strategy="joint"))
  assert len(joint) == 1 and joint[0].datasets == tuple(f"synth_lreid/d{i}" for i in range(4))


@pytest.mark.parametrize("domains,match", [("", "empty"), ("a,b,a", "twice")])
def test_bad_domain_lists(domains, match):
  with pytest.raises(ConfigError, match=match):
    lifelong.plan(_config(domains=domains))


def test_step_config_schedules_in_epochs_of_its_domain():
  config = _config()  # batch 64, 12 epochs, warmup 2, milestones 8 (first) / 6 (later)
  steps = lifelong.plan(config)
  first = lifelong.step_config(config, 0, steps[0], "/pre")
  assert first.data.train == "synth_lreid/d0" and first.data.test == ""
  assert first.init_from == "/pre"
  # Resolved by the loop from the step's own images (jreid.train.durations).
  resolved, _ = durations.resolve(first, images=1005)
  assert resolved.train.steps == 189  # ceil(12 * 1005 / 64)
  assert resolved.optim.warmup_steps == 32 and tuple(resolved.optim.milestones) == (126,)
  later = lifelong.step_config(config, 2, steps[2], "/runs/step2")
  resolved, _ = durations.resolve(later, images=990)
  assert resolved.train.steps == 186 and tuple(resolved.optim.milestones) == (93,)
  assert later.init_from == "/runs/step2"
  assert config.data.train == "" and config.train.epochs == 0  # the user's config is untouched


def test_lwf_starts_as_fine_tuning_then_distils_from_the_previous_step():
  config = _config(strategy="lwf")
  steps = lifelong.plan(config)
  first = lifelong.step_config(config, 0, steps[0], "/pre")
  assert first.lifelong.strategy == "finetune" and first.lifelong.teacher == ""
  second = lifelong.step_config(config, 1, steps[1], "/runs/step1")
  assert second.lifelong.strategy == "lwf" and second.lifelong.teacher == "/runs/step1"


def test_config_checks_fail_before_any_work():
  config = _config(unseen_policy="nearest")
  with pytest.raises(ConfigError, match="unseen_policy"):
    lifelong.check_config(config)
  config = _config()
  config.init_from = ""
  with pytest.raises(ConfigError, match="pre-trained"):
    lifelong.check_config(config)
  config = _config()
  config.method = "supervised"
  with pytest.raises(ConfigError, match="method='dasa'"):
    lifelong.check_config(config)
  config = _config(strategy="finetune")
  config.init_from = ""
  lifelong.check_config(config)  # fine-tuning may start from scratch
