"""The model config: one section per backbone family, only its own keys per meta-architecture."""
import dataclasses

import pytest

from jreid.errors import ConfigError
from jreid.models.backbones import BACKBONES, FAMILIES, backbone_config, backbone_options
from jreid.models.backbones.resnet import ResNet
from jreid.models.mgn import MGN
from jreid.models.pcb import PCB
from jreid.models.reid import ReID, build_model, from_flat_config, model_config


def test_a_misspelt_backbone_option_is_named_with_the_known_ones():
  config = model_config("reid", "resnet18")
  config.backbone.widht = 8
  with pytest.raises(ConfigError, match=r"model.backbone.widht is not an option of resnet18 "
                                        r"\(ResNet\); known: \[.*'width'.*\]"):
    build_model(config, 5)
  # A ResNet field the name fixes (its depth) is not a config option either.
  _, options = backbone_options(dict(backbone_config("resnet18"), width=8))
  assert options["width"] == 8
  with pytest.raises(ConfigError, match="model.backbone.stage_sizes is not an option"):
    backbone_options(dict(backbone_config("resnet18"), stage_sizes=(1, 1, 1, 1)))
  with pytest.raises(ConfigError, match=r"model.backbone.name='resnet5'; choose one of"):
    backbone_options(dict(backbone_config("resnet18"), name="resnet5"))


def test_each_family_section_is_a_subset_of_its_module_fields():
  for name, family in FAMILIES.items():
    fields = {f.name for f in dataclasses.fields(family.module)}
    assert set(family.options()) <= set(family.option_keys()) <= fields, name
  assert set(FAMILIES["resnet"].option_keys()) == {
      "width", "last_stride", "ibn", "ceil_mode_pool", "non_local", "conv_impl", "sa_kernel",
      "sa_stages"}
  assert {entry.family for entry in BACKBONES.values()} == set(FAMILIES)
  assert BACKBONES["resnet50"].family == "resnet" and FAMILIES["resnet"].module is ResNet


def test_a_key_of_another_meta_architecture_is_an_error_naming_its_owner():
  config = model_config("reid", "resnet18")
  config.num_parts = 4
  with pytest.raises(ConfigError, match=r"model.num_parts belongs to model.meta='pcb', not to "
                                        r"model.meta='reid'"):
    build_model(config, 5)
  config = model_config("pcb", "resnet18")
  config.head = "linear"
  with pytest.raises(ConfigError, match=r"model.head belongs to model.meta='reid'"):
    build_model(config, 5)
  config = model_config("mgn", "resnet18")
  config.part_dim = 128
  with pytest.raises(ConfigError, match=r"model.part_dim belongs to model.meta='pcb'"):
    build_model(config, 5)
  config = model_config("mgn", "resnet18")
  config.neck_bais = True
  with pytest.raises(ConfigError, match=r"model.neck_bais is not a model key"):
    build_model(config, 5)
  config = model_config("reid", "resnet18")
  del config["dropout"]
  with pytest.raises(ConfigError, match=r"lacks \['dropout'\]"):
    build_model(config, 5)


def test_each_meta_architecture_has_only_the_keys_it_uses():
  common = {"meta", "backbone", "pooling", "gem_p", "gem_learnable", "test_feature"}
  assert set(model_config("reid").keys()) == common | {"head", "neck_bias", "embed_dim", "dropout"}
  assert set(model_config("mgn").keys()) == common | {"neck_bias"}
  assert set(model_config("pcb").keys()) == common | {"num_parts", "part_dim", "dropout"}
  for meta, cls in (("reid", ReID), ("mgn", MGN), ("pcb", PCB)):
    assert isinstance(build_model(model_config(meta, "resnet18"), 5), cls)
  assert set(model_config("reid", "resnest50").backbone.keys()) == {
      "name", "width", "last_stride", "non_local", "conv_impl"}


def test_a_flat_config_of_an_older_jreid_upgrades_to_the_same_settings():
  flat = dict(backbone="resnet18", width=8, last_stride=2, ibn="a", non_local=False,
              pooling="gem", gem_p=4.0, gem_learnable=True, neck_bias=True,
              test_feature="pre_neck", head="bnneck", embed_dim=0, dropout=0.0, meta="mgn",
              num_parts=6, part_dim=256, sa_kernel=0, sa_stages=[0, 1, 2, 3, 4])  # no conv_impl
  config = from_flat_config(flat)
  assert config.to_dict() == dict(
      meta="mgn", backbone=dict(name="resnet18", width=8, last_stride=2, ibn="a",
                                non_local=False, conv_impl="auto", sa_kernel=0,
                                sa_stages=[0, 1, 2, 3, 4]),
      pooling="gem", gem_p=4.0, gem_learnable=True, test_feature="pre_neck", neck_bias=True)
  assert isinstance(build_model(config, 5), MGN)
