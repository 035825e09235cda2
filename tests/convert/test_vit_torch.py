"""ViT, ICS ViT and CLIP tower against PyTorch references written from the published layouts.

The torch side (`benchmarks/torch_vit.py`) is independent of jreid's Flax
code. Random torch weights read into jreid must give the same features to
1e-5 at 224x224 and, after jreid resizes the 14x14 position grid at load time,
at 256x128, where the reference is the torch model whose position embedding
was resized by `F.interpolate` (bicubic for timm/DINO files, bilinear for CLIP);
jreid's exports must load into the torch classes with `strict=True` and give
the same features.
"""
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from benchmarks import torch_vit
from jreid.convert import export, load, maps
from jreid.models.reid import build_model, model_config

torch.set_num_threads(1)
NUM_CLASSES = 5
TOL = 1e-5


def jreid_model(name, size, *, dim=64, depth=3, heads=4, stride=16):
  config = model_config("reid", name)
  config.backbone.update(embed_dim=dim, depth=depth, num_heads=heads, stride=stride)
  if name.startswith("clip"):
    config.backbone.proj_dim = 32
  model = build_model(config, NUM_CLASSES)
  variables = model.init(__import__("jax").random.key(0), jnp.zeros((1, *size, 3)), train=False)
  return model, variables


def torch_model(name, size, *, dim=64, depth=3, heads=4, stride=16, seed=0):
  if name.startswith("clip"):
    base = torch_vit.CLIPVisual(input_resolution=size, width=dim, layers=depth, heads=heads,
                                output_dim=32)
  else:
    base = torch_vit.VisionTransformer(img_size=size, stride=stride, embed_dim=dim, depth=depth,
                                       num_heads=heads, stem_conv=name.endswith("_ics"))
  model = torch_vit.TransReID(base, NUM_CLASSES)
  torch_vit.randomize(model, seed)
  with torch.no_grad():
    model.bottleneck.bias.zero_()  # BNNeck's frozen bias (jreid's neck has none)
  return model.eval()


def images(size, n=2, seed=0):
  return np.random.default_rng(seed).normal(size=(n, 3, *size)).astype(np.float32)


def features(model, variables, x):
  _, out = model.apply(variables, np.transpose(x, (0, 2, 3, 1)), train=False)
  return np.asarray(out["pre_neck"]), np.asarray(out["neck"]), np.asarray(out["logits"])


def torch_features(model, x):
  with torch.no_grad():
    return tuple(t.numpy() for t in model(torch.from_numpy(x)))


def state_of(model):
  return {k: v.numpy() for k, v in model.state_dict().items()}


def assert_same(got, want, tol=TOL):
  for g, w, what in zip(got, want, ("pre_neck", "neck", "logits")):
    assert np.abs(g - w).max() <= tol, f"{what}: max abs diff {np.abs(g - w).max():.2e}"


CASES = {"vit": ("vit_small", {}), "vit_stride12": ("vit_small", {"stride": 12}),
         "ics": ("vit_small_ics", {}), "clip": ("clip_vit_b16", {})}


@pytest.mark.parametrize("case", CASES)
def test_torch_weights_give_the_same_features_at_224(case):
  name, options = CASES[case]
  reference = torch_model(name, (224, 224), **options)
  model, variables = jreid_model(name, (224, 224), **options)
  merged, report = load.merge_state_dict(variables, state_of(reference))
  assert report.unused == [] and report.mismatched == [] and report.missing == []
  x = images((224, 224))
  assert_same(features(model, merged, x), torch_features(reference, x))


def _resized_reference(name, source, size, options):
  """`source`'s weights in a torch model at `size`, its position grid resized by F.interpolate."""
  target = torch_model(name, size, seed=1, **options)
  state = source.state_dict()
  clip = name.startswith("clip")
  key = "base.positional_embedding" if clip else "base.pos_embed"
  rows = state[key].reshape(-1, state[key].shape[-1])
  side = int(round((rows.shape[0] - 1) ** 0.5))
  grid = rows[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
  h, w = target.base.grid if clip else target.base.patch_embed.grid
  new = F.interpolate(grid, size=(h, w), mode="bilinear" if clip else "bicubic", align_corners=False)
  new_rows = torch.cat([rows[:1], new.permute(0, 2, 3, 1).reshape(h * w, -1)])
  state[key] = new_rows if clip else new_rows[None]
  target.load_state_dict(state, strict=True)
  return target


@pytest.mark.parametrize("case", ["vit", "ics", "clip"])
def test_a_224_checkpoint_in_a_256x128_model_is_resized_as_torch_interpolates(case):
  name, options = CASES[case]
  source = torch_model(name, (224, 224), **options)
  model, variables = jreid_model(name, (256, 128), **options)
  merged, report = load.merge_state_dict(variables, state_of(source), source="clip.pt")
  file_name = "positional_embedding" if name.startswith("clip") else "pos_embed"
  assert [(n.split(".")[-1], b) for n, _, b in report.resized] == [(file_name, (16, 8, 64))]
  x = images((256, 128))
  reference = _resized_reference(name, source, (256, 128), options)
  assert_same(features(model, merged, x), torch_features(reference, x))


@pytest.mark.parametrize("case, layout", [("vit", "timm"), ("vit", "transreid"), ("ics", "timm"),
                                          ("ics", "transreid"), ("clip", "openai")])
def test_exports_load_strictly_into_the_torch_classes(tmp_path, case, layout):
  name, options = CASES[case]
  donor = torch_model(name, (256, 128), seed=3, **options)
  model, variables = jreid_model(name, (256, 128), **options)
  variables, _ = load.merge_state_dict(variables, state_of(donor))
  out = export.export_variables(variables, tmp_path / "model.pth", layout=layout).out
  state = torch.load(out, weights_only=True)
  reference = torch_model(name, (256, 128), seed=4, **options)
  if layout == "transreid":
    reference.load_state_dict(state, strict=True)
  elif layout == "openai":
    encoder = torch_vit.CLIPImageEncoder(input_resolution=(256, 128), width=64, layers=3, heads=4,
                                         output_dim=32)
    encoder.load_state_dict(state, strict=True)
    reference.base = encoder.visual
  else:
    reference.base.load_state_dict(state, strict=True)
  x = images((256, 128), seed=1)
  got, want = features(model, variables, x), torch_features(reference.eval(), x)
  assert np.abs(got[0] - want[0]).max() <= TOL
  if layout == "transreid":
    assert_same(got, want)


def test_a_full_size_vit_s16_matches_at_256x128():
  reference = torch_model("vit_small_ics", (256, 128), dim=384, depth=12, heads=6)
  model, variables = jreid_model("vit_small_ics", (256, 128), dim=384, depth=12, heads=6)
  merged, report = load.merge_state_dict(variables, state_of(reference))
  # Every tensor but the 4 BN counters and the zero neck bias (both ignored on purpose).
  assert report.missing == [] and len(report.loaded) == len(reference.state_dict()) - 5
  x = images((256, 128))
  assert_same(features(model, merged, x), torch_features(reference, x))
  assert maps.resolve(load.torch_names.flatten(merged)) is maps.VIT


def test_another_input_size_interpolates_positions_as_dino_does():
  """A 256x128 model fed 128x64 crops: DINO's interpolate_pos_encoding, written out in torch."""
  reference = torch_model("vit_small", (256, 128))
  model, variables = jreid_model("vit_small", (256, 128))
  merged, _ = load.merge_state_dict(variables, state_of(reference))
  x = images((128, 64))
  base = reference.base
  with torch.no_grad():
    tokens = base.patch_embed(torch.from_numpy(x))
    grid = base.pos_embed[:, 1:].reshape(1, 16, 8, -1).permute(0, 3, 1, 2)
    h, w = 8 + 0.1, 4 + 0.1  # DINO's +0.1 before the scale factor
    grid = F.interpolate(grid, scale_factor=(h / 16, w / 8), mode="bicubic", align_corners=False)
    pos = torch.cat([base.pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 32, -1)], 1)
    out = torch.cat([base.cls_token.expand(2, -1, -1), tokens], 1) + pos
    for block in base.blocks:
      out = block(out)
    want = base.norm(out)[:, 0].numpy()
  got = features(model, merged, x)[0]
  assert np.abs(got - want).max() <= TOL
