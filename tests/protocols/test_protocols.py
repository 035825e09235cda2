"""`config.protocol` picks the protocol; a name or a section that does not fit fails before any work."""
import pytest

from benchmarks.common import load_config
from jreid import config_blocks, protocols
from jreid.errors import ConfigError


def _unlocked(spec):
  config = load_config(spec)
  config.unlock()
  return config


@pytest.mark.parametrize("spec,name", [("configs/baseline.py:smoke", "single"),
                                       ("configs/dasa.py:smoke", "lifelong"),
                                       ("configs/baseline.py:smoke_dg", "dg"),
                                       ("configs/baseline.py:synth_dg", "dg")])
def test_presets_select_their_protocol(spec, name):
  assert protocols.check(load_config(spec)) == name


def test_unknown_protocol_names_the_known_ones():
  config = _unlocked("configs/baseline.py:smoke")
  config.protocol = "lifelong_dg"
  with pytest.raises(ConfigError, match=r"unknown protocol 'lifelong_dg'.*'dg', 'lifelong', 'single'"):
    protocols.run(config, "/not/written")


def test_a_missing_protocol_key_is_an_error_not_a_guess():
  config = _unlocked("configs/dasa.py:smoke")
  del config["protocol"]
  with pytest.raises(ConfigError, match="no `protocol` key"):
    protocols.check(config)


@pytest.mark.parametrize("protocol,section", [("lifelong", "lifelong"), ("dg", "dg")])
def test_a_protocol_without_its_section(protocol, section):
  config = _unlocked("configs/baseline.py:smoke")
  config.protocol = protocol
  with pytest.raises(ConfigError, match=rf"protocol='{protocol}' reads config.{section}, which this config lacks"):
    protocols.run(config, "/not/written")


def test_a_section_of_another_protocol():
  config = _unlocked("configs/dasa.py:smoke")
  config.protocol = "single"
  with pytest.raises(ConfigError, match="config.lifelong is the 'lifelong' protocol's section, but "
                                        "protocol='single'"):
    protocols.check(config)
  config = _unlocked("configs/dasa.py:smoke")
  config.dg = config_blocks.dg(targets="a,b", mode="leave_one_out")
  with pytest.raises(ConfigError, match="config.dg is the 'dg' protocol's section, but protocol='lifelong'"):
    protocols.check(config)


def test_every_table_entry_names_a_module_with_run():
  import importlib
  for protocol in protocols.PROTOCOLS.values():
    assert callable(importlib.import_module(protocol.module).run)
