"""The config rule vocabulary (jreid.config_rules), and the rules the sections declare with it.

The vocabulary is checked on hand-picked values at and around each bound;
the declarations on their completeness (every field of every section has a
rule), on their name lists (equal to the tables that resolve the names) and
on every preset of configs/*.py (a valid preset is never refused).
"""
import math

import ml_collections
import pytest

from benchmarks.common import load_config
from jreid import config_blocks, config_rules, methods, protocols
from jreid.config_rules import Bool, Float, Int, OneOf, Probability, Row, Str, Tuple
from jreid.errors import ConfigError
from tests.configs.test_configs import PRESETS

SPECS = [f"{path}:{arg}" if arg else path for path, args in PRESETS.items() for arg in args]


@pytest.mark.parametrize("rule,good,bad", [
    (Int(1), [1, 2, 10**9], [0, -1, 1.0, 2.5, True, "3", None]),
    (Int(0, 4), [0, 4], [-1, 5]),
    (Int(1, odd=True), [1, 3, 9], [0, 2, 4, -1]),
    (Float(0), [0, 0.0, 1, 1e30], [-1e-9, math.nan, math.inf, -math.inf, False, "1"]),
    (Float(0, open_low=True), [1e-12, 3], [0, 0.0, -1]),
    (Float(0, 1, open_high=True), [0, 0.999], [1, 1.0, -0.1]),
    (Float(high=1), [-1.0, 1], [1.5]),
    (Probability(), [0, 0.5, 1, 1.0], [2, -1, 1.0000001, math.nan]),
    (OneOf("cosine", "euclidean"), ["cosine", "euclidean"], ["manhattan", "", None, 1]),
    (OneOf(1, 2), [1, 2], [1.0, True, 3, "1"]),  # the same type: True == 1 but is no stride
    (Bool(), [True, False], [0, 1, "True", None]),
    (Str(), ["", "a"], [1, None, ("a",)]),
    (Tuple(Float(0, 1), 3), [(0.1, 0.2, 0.3), [0, 1, 0.5]], [(0.1, 0.2), (0.1, 0.2, 2), "abc", 0.5]),
    (Tuple(Int(1), ordered=True), [(), (3,), (3, 3, 7)], [(7, 3), (3, "abc"), (0,)]),
    (Tuple(Float(0), (0, 2), ordered=True), [(), (0.2, 1.0)], [(0.5,), (1.0, 0.2), (1, 2, 3)]),
    (Row(Str(), Float(0), Float(0)), [("backbone/.*", 0.1, 1.0), ["x", 1, 0]],
     [("x", -1.0, 1.0), ("x", 1.0), (1, 1.0, 1.0)]),
    (OneOf(0) | Int(1, odd=True), [0, 1, 5], [2, -1, 0.0]),
    (OneOf("", "a", "b") | Bool(), ["", "a", True], ["c", 1]),
])
def test_each_rule_accepts_and_refuses(rule, good, bad):
  for value in good:
    assert rule.fits(value) and rule.problem(value) is None, (rule, value)
  for value in bad:
    assert not rule.fits(value) and rule.problem(value).startswith("expected "), (rule, value)


@pytest.mark.parametrize("rule,text", [
    (Int(1), "an integer >= 1"), (Int(0, 4), "an integer in [0, 4]"),
    (Int(1, odd=True), "an odd integer >= 1"), (Float(0, open_low=True), "a number > 0"),
    (Float(0, 1, open_high=True), "a number in [0, 1)"), (Float(high=1), "a number <= 1"),
    (Probability(), "a probability in [0, 1]"), (OneOf("a", "b"), "one of 'a', 'b'"),
    (Tuple(Float(0), 2, ordered=True), "a tuple of 2 values, each a number >= 0, in increasing order"),
    (OneOf(0) | Int(1, odd=True), "one of 0 or an odd integer >= 1"),
])
def test_what_a_rule_says_it_expects(rule, text):
  assert rule.expected == text


def test_a_tuple_names_its_bad_element_and_length():
  rule = Tuple(Int(1), ordered=True)
  assert rule.problem((3, "abc")).endswith("element 1 is 'abc'")
  assert Tuple(Float(), 3).problem((1, 2)).endswith("got 2 values")


def test_check_names_the_full_key_the_value_and_the_rule():
  config = ml_collections.ConfigDict(dict(data=dict(flip_p=2.0, height=8), extra="passes"))
  rules = {"data": {"flip_p": Probability(), "height": Int(1)}}
  with pytest.raises(ConfigError) as err:
    config_rules.check(config, rules)
  assert str(err.value) == "config.data.flip_p=2.0: expected a probability in [0, 1]"
  config.data.flip_p = 0.5
  config_rules.check(config, rules)  # and `extra`, which has no rule, passes


def test_check_reports_a_missing_key_or_section_and_a_value_for_a_section():
  with pytest.raises(ConfigError, match=r"^config.data.height is missing: expected an integer >= 1$"):
    config_rules.check({"data": {}}, {"data": {"height": Int(1)}})
  with pytest.raises(ConfigError, match=r"^config.loss is missing: expected a section$"):
    config_rules.check({}, {"loss": {"ce_weight": Float(0)}})
  with pytest.raises(ConfigError, match=r"^config.model='x': expected a section"):
    config_rules.check({"model": "x"}, {"model": {"meta": Str()}})


def test_check_multiple():
  config = {"train": {"batch_size": 18}, "data": {"num_instances": 4}}
  with pytest.raises(ConfigError, match=r"config.train.batch_size=18 must be a multiple of "
                                        r"config.data.num_instances=4"):
    config_rules.check_multiple(config, "train.batch_size", "data.num_instances", "P x K")
  config["train"]["batch_size"] = 16
  config_rules.check_multiple(config, "train.batch_size", "data.num_instances", "P x K")


def test_batches_must_split_over_the_device_count(monkeypatch):
  import jax
  from jreid.core import sharding
  monkeypatch.setattr(jax, "device_count", lambda: 3)
  with pytest.raises(ConfigError, match=r"config.eval.batch_size=32 must be a multiple of the device count 3"):
    sharding.check_divisible({"train.batch_size": 24, "eval.batch_size": 32})
  sharding.check_divisible({"train.batch_size": 24, "eval.batch_size": 33})


# Every field of every section has a rule: (the section as its builder makes it, its rules).
def _sections():
  from jreid.methods.dasa import LIFELONG_RULES, lifelong_config
  from jreid.methods.distill import TEACHER_RULES, teacher_config
  from jreid.methods.upreid import UPREID_RULES, upreid_config
  from jreid.models import backbones, contrastive, reid
  yield "data", config_blocks.data(train="a", test="b", root="r", height=8, width=4), config_blocks.DATA_RULES
  yield "loss", config_blocks.loss(), config_blocks.LOSS_RULES
  yield "optim", config_blocks.optim(), config_blocks.OPTIM_RULES
  yield "train", config_blocks.train(), config_blocks.TRAIN_RULES
  yield "eval", config_blocks.evaluation(), config_blocks.EVAL_RULES
  yield "run", config_blocks.run(method="supervised"), config_blocks.RUN_RULES
  yield "dg", config_blocks.dg(), config_blocks.DG_RULES
  yield "lifelong", lifelong_config(), LIFELONG_RULES
  yield "upreid", upreid_config(), UPREID_RULES
  teacher = teacher_config()
  yield "teacher", {k: v for k, v in teacher.items() if k != "model"}, TEACHER_RULES
  for name in backbones.BACKBONES:
    section = backbones.backbone_config(name)
    yield f"backbone {name}", section, backbones.backbone_rules(section)
  for meta in reid.METAS:
    model = reid.model_config(meta, "resnet18")
    yield f"model {meta}", model, reid.model_rules(model)
  encoder = contrastive.encoder_config("resnet18")
  yield "encoder", encoder, contrastive.encoder_rules(encoder)


@pytest.mark.parametrize("name,section,rules", list(_sections()), ids=lambda x: x if isinstance(x, str) else "")
def test_every_field_of_a_section_has_a_rule_and_its_default_fits(name, section, rules):
  assert sorted(section.keys()) == sorted(rules), name
  config_rules.check(section, rules, where=name)


def test_name_lists_are_the_tables_that_resolve_them():
  from jreid.core.precision import COMPUTE_DTYPES
  from jreid.data.sources import FORMATS
  from jreid.evaluation.distance import METRICS
  from jreid.losses.objective import MARGIN_SOFTMAXES
  from jreid.models.layers import CONV_IMPLS
  from jreid.models.backbones import _CONV_IMPLS
  from jreid.protocols.dg import MODES
  from jreid.train.optim import OPTIMIZERS, SCHEDULES
  names = lambda rule: sorted(rule.choices)
  assert names(config_blocks.OPTIM_RULES["name"]) == sorted(OPTIMIZERS)
  assert names(config_blocks.OPTIM_RULES["schedule"]) == sorted(SCHEDULES)
  assert names(config_blocks.LOSS_RULES["softmax"]) == sorted(["linear", *MARGIN_SOFTMAXES])
  assert names(config_blocks.EVAL_RULES["metric"]) == sorted(METRICS)
  assert names(config_blocks.TRAIN_RULES["compute_dtype"]) == sorted(COMPUTE_DTYPES)
  assert names(config_blocks.DG_RULES["mode"]) == sorted(MODES)
  assert names(config_blocks.DATA_RULES["format"]) == sorted(FORMATS)
  assert names(_CONV_IMPLS) == sorted(["auto", *CONV_IMPLS])


@pytest.mark.parametrize("spec", SPECS)
def test_every_preset_validates(spec):
  config = load_config(spec)
  protocols.check(config)
  protocols.validate(config)  # recipes included: init_from=recipe:... is loaded and checked too


def test_a_method_checks_only_its_own_sections():
  """UP-ReID reads no `loss` and draws no P x K batches: neither constrains it."""
  config = load_config("configs/upreid.py:smoke")
  assert "loss" not in config
  config.data.num_instances = 5  # 16 % 5 != 0, but UP-ReID batches are single images
  protocols.validate(config)
  supervised = load_config("configs/baseline.py:smoke")
  supervised.data.num_instances = 5
  with pytest.raises(ConfigError, match="config.train.batch_size=16 must be a multiple of "
                                        "config.data.num_instances=5"):
    protocols.validate(supervised)
  del supervised["loss"]
  with pytest.raises(ConfigError, match="config.loss is missing"):
    methods.validate(supervised)
