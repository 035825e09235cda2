"""The ViT backbone's own mechanics (the PyTorch parity is tests/convert/test_vit_torch.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.errors import ConfigError
from jreid.models.backbones import BACKBONES, backbone_config, backbone_options
from jreid.models.backbones.vit import DropPath, PatchEmbed, drop_path_rates, token_grid
from jreid.models.reid import build_model, model_config


def tiny(name="vit_small", **options):
  config = model_config("reid", name)
  config.backbone.update({"embed_dim": 16, "depth": 2, "num_heads": 2, **options})
  return config


@pytest.mark.parametrize("size, patch, stride, grid", [
    ((224, 224), 16, 16, (14, 14)), ((256, 128), 16, 16, (16, 8)),
    ((256, 128), 16, 12, (21, 10)), ((128, 64), 16, 16, (8, 4))])
def test_token_grid_counts_valid_patches(size, patch, stride, grid):
  assert token_grid(size, patch, stride) == grid


def test_the_matmul_patchify_is_the_valid_convolution():
  x = jax.random.normal(jax.random.key(0), (2, 37, 21, 3))  # remainders are cropped, as VALID does
  module = PatchEmbed(8, 4, 4)
  variables = module.init(jax.random.key(1), x)
  kernel, bias = variables["params"]["kernel"], variables["params"]["bias"]
  conv = jax.lax.conv_general_dilated(x, kernel, (4, 4), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias
  np.testing.assert_allclose(module.apply(variables, x), conv, atol=1e-5)


def test_drop_path_keeps_or_drops_whole_samples_and_is_identity_at_test_time():
  x = jnp.ones((64, 5, 3))
  module = DropPath(0.5)
  assert (module.apply({}, x, train=False) == x).all()
  y = np.asarray(module.apply({}, x, train=True, rngs={"dropout": jax.random.key(3)}))
  per_sample = {tuple(np.unique(sample)) for sample in y}
  assert per_sample <= {(0.0,), (2.0,)} and len(per_sample) == 2  # 1/(1-0.5) = 2 where kept


def test_drop_path_rates_rise_linearly_over_depth():
  np.testing.assert_allclose(drop_path_rates(0.2, 5), [0.0, 0.05, 0.1, 0.15, 0.2])
  assert drop_path_rates(0.1, 1) == [0.0]


def test_a_vit_reid_model_gives_the_cls_feature_and_its_patch_map():
  model = build_model(tiny(), 7)
  assert model_config("reid", "vit_small").pooling == "identity"
  variables = model.init(jax.random.key(0), jnp.zeros((1, 64, 32, 3)), train=False)
  assert variables["params"]["backbone"]["pos_embed"].shape == (4, 2, 16)
  feature, out = model.apply(variables, jnp.ones((3, 64, 32, 3)), train=False)
  assert feature.shape == (3, 16) and out["logits"].shape == (3, 7)
  assert out["patch_tokens"].shape == (3, 4, 2, 16)
  np.testing.assert_array_equal(feature, out["neck"])  # test_feature "neck" by default


def test_clip_tower_projects_its_cls_feature():
  config = tiny("clip_vit_b16", proj_dim=6)
  model = build_model(config, 4)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  backbone = variables["params"]["backbone"]
  assert backbone["proj"].shape == (16, 6) and "norm_pre" in backbone
  assert "bias" not in backbone["patch_embed"]["proj"]
  feature, _ = model.apply(variables, jnp.ones((2, 32, 32, 3)), train=False)
  assert feature.shape == (2, 6)


@pytest.mark.parametrize("change, message", [
    (dict(pooling="avg"), "model.pooling='avg' pools a feature map, but vit_small gives one vector"),
    (dict(meta="pcb", num_parts=2, part_dim=4, dropout=0.0, head=None), "splits a feature map"),
])
def test_a_vit_with_map_pooling_or_stripes_is_refused(change, message):
  config = tiny()
  if change.pop("head", "") is None:
    for key in ("head", "neck_bias", "embed_dim"):
      del config[key]
    config.dropout = 0.0
  config.update(change)
  with pytest.raises(ConfigError, match=message):
    build_model(config, 3)


@pytest.mark.parametrize("options, message", [
    (dict(embed_dim=30, num_heads=4), "embed_dim=30 must be a multiple of model.backbone.num_heads=4"),
    (dict(stride=20), "stride=20 skips pixels"),
    (dict(stem_channels=8), "stem_channels is not an option of vit_small"),
])
def test_bad_vit_options_are_named(options, message):
  with pytest.raises(ConfigError, match=message):
    backbone_options(dict(backbone_config("vit_small"), **options))


def test_named_vits_fix_their_published_shapes():
  small, base = backbone_config("vit_small_ics"), backbone_config("vit_base")
  assert (small.embed_dim, small.depth, small.num_heads, small.stem_channels) == (384, 12, 6, 64)
  assert (base.embed_dim, base.depth, base.num_heads) == (768, 12, 12)
  clip = backbone_config("clip_vit_b16")
  assert (clip.embed_dim, clip.num_heads, clip.proj_dim) == (768, 12, 512)
  assert BACKBONES["clip_vit_b16"].architecture["activation"] == "quick_gelu"
  assert BACKBONES["clip_vit_b16"].architecture["norm_eps"] == 1e-5
  assert BACKBONES["vit_small"].architecture["norm_eps"] == 1e-6
