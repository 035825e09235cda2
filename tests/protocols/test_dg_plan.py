"""The domain-generalisation protocol's plan, its per-run configs and its checks (no training)."""
import pytest

from benchmarks.common import load_config
from jreid.errors import ConfigError
from jreid.protocols import dg


def _config(**dg_overrides):
  config = load_config("configs/baseline.py:synth_dg")
  config.dg.update(dg_overrides)
  return config


def test_leave_one_out_trains_on_every_other_dataset():
  names = [f"synth_lreid/d{i}" for i in range(4)]
  subs = dg.plan(_config())
  assert [s.test for s in subs] == [(n,) for n in names]
  for sub, held_out in zip(subs, names):
    assert sub.train == tuple(n for n in names if n != held_out)  # the others, in the listed order
    assert held_out not in sub.train
  assert [s.folder for s in subs] == [f"heldout_synth_lreid_d{i}" for i in range(4)]


def test_single_source_is_one_run_tested_on_every_target():
  subs = dg.plan(_config(mode="single_source", sources="synth_lreid/d0",
                         targets="synth_lreid/d1,synth_lreid/u0,synth_lreid/u1"))
  assert len(subs) == 1
  assert subs[0].train == ("synth_lreid/d0",)
  assert subs[0].test == ("synth_lreid/d1", "synth_lreid/u0", "synth_lreid/u1")
  assert subs[0].folder == "source_synth_lreid_d0"
  two = dg.plan(_config(mode="single_source", sources="a,b", targets="c"))
  assert two[0].train == ("a", "b") and two[0].folder == "source_a+b"


def test_test_sources_adds_the_sources_test_sets_to_the_single_run_only():
  subs = dg.plan(_config(mode="single_source", sources="synth_lreid/d0", targets="synth_lreid/d1",
                         test_sources=True))
  assert subs[0].test == ("synth_lreid/d1", "synth_lreid/d0")
  with pytest.raises(ConfigError, match="test_sources applies to dg.mode='single_source'"):
    dg.plan(_config(test_sources=True))


def test_source_rows_are_reported_apart_from_the_targets_average():
  results = {"mode": "single_source",
             "targets": {"t": {"trained_on": ["s"], "mAP": 10.0, "rank1": 20.0, "rank5": 30.0,
                               "mINP": 5.0}},
             "average": {"mAP": 10.0, "rank1": 20.0, "rank5": 30.0, "mINP": 5.0},
             "sources": {"s": {"trained_on": ["s"], "mAP": 80.0, "rank1": 90.0, "rank5": 95.0,
                               "mINP": 60.0}}}
  lines = dg.format_table(results).splitlines()
  assert lines[-2].split()[-4:] == ["10.00", "20.00", "30.00", "5.00"]  # the targets' average
  assert lines[-1].split() == ["s", "(source)", "80.00", "90.00", "95.00", "60.00"]


def test_sub_config_is_a_single_run_of_its_datasets():
  config = _config()
  sub = dg.plan(config)[1]
  one = dg.sub_config(config, sub)
  assert one.protocol == "single" and "dg" not in one
  assert one.data.train == "synth_lreid/d0,synth_lreid/d2,synth_lreid/d3"
  assert one.data.test == "synth_lreid/d1"
  assert one.train.steps == config.train.steps and one.model == config.model
  assert config.protocol == "dg" and config.data.train == "" and "dg" in config  # untouched
  from jreid import protocols
  assert protocols.check(one) == "single"


@pytest.mark.parametrize("overrides,match", [
    (dict(mode="sideways"), "dg.mode='sideways'"),
    (dict(targets=""), "dg.targets is empty"),
    (dict(targets="a,b,a"), "names a dataset twice"),
    (dict(targets="a"), "at least two targets"),
    (dict(sources="x"), "must be empty"),
    (dict(mode="single_source", sources="", targets="a"), "dg.sources, which is empty"),
    (dict(mode="single_source", sources="a,b", targets="b,c"), r"\['b'\] are also sources"),
])
def test_bad_dg_sections(overrides, match):
  with pytest.raises(ConfigError, match=match):
    dg.plan(_config(**overrides))


def test_data_sets_are_the_protocol_s_to_choose():
  config = _config()
  config.data.train = "synth_lreid/d0"
  with pytest.raises(ConfigError, match="leave them empty"):
    dg.plan(config)


def test_a_misspelt_dg_key():
  config = _config()
  config.unlock()
  config.dg.target = "a"
  with pytest.raises(ConfigError, match=r"unknown \['target'\]"):
    dg.plan(config)
