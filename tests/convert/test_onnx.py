"""The ONNX export run by onnxruntime gives jreid's own features.

A tiny run (config.json + checkpoint, as a training run leaves them) is
exported with the CLI; the reference is the model jreid builds from the same
config with its defaults (XLA convs, `lax.reduce_window` stem pool), applied
in eval mode, so the export's two rewrites (window max as slices, 1x1 convs
as dots) are checked too. Batches of 5 and 1 check the dynamic batch (the
graph is traced with a symbolic one).
"""
import json

import jax
import numpy as np
import onnx
import onnxruntime
import pytest

from jreid import methods
from jreid.config_blocks import load_config
from jreid.convert import onnx_export
from jreid.core.checkpoint import Checkpointer
from jreid.core.state import TrainState
from jreid.errors import ConfigError, WeightsFileError
from jreid.models.reid import build_model, model_config
from jreid.tools import export as export_tool
from tests.convert.conftest import IMAGE, NUM_CLASSES, random_variables

TOL = 1e-4
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def write_run(workdir, model_cfg, variables, method="supervised"):
  """config.json (configs/baseline.py:smoke with this model, 64x32) and one checkpoint."""
  config = load_config("configs/baseline.py:smoke")
  config.model = model_cfg
  config.data.update(height=IMAGE[0], width=IMAGE[1], mean=MEAN, std=STD)
  config.method = method
  workdir.mkdir(parents=True)
  (workdir / "config.json").write_text(config.to_json())
  params = jax.tree.map(np.asarray, variables["params"])
  state = TrainState(step=np.int32(3), params=params, batch_stats=variables.get("batch_stats", {}),
                     opt_state=(jax.tree.map(np.zeros_like, params),))
  checkpointer = Checkpointer(workdir / "checkpoints")
  checkpointer.save(3, state, {"next_index": 0})
  checkpointer.wait()
  checkpointer.close()
  return config


def exported_features(tmp_path, model_cfg, variables, capsys):
  """ORT's and jreid's features of the same random images, batch 5 and 1; the ONNX model."""
  write_run(tmp_path / "run", model_cfg, variables)
  out = tmp_path / "export" / "model.onnx"
  assert export_tool.main(["--checkpoint", str(tmp_path / "run"), "--out", str(out)]) == 0
  assert f"to {out}" in capsys.readouterr().out
  session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
  model = build_model(model_cfg, NUM_CLASSES)
  images = np.random.default_rng(0).normal(size=(5, 3, *IMAGE)).astype(np.float32)
  # Eval mode embeds each image on its own, so the first image's feature is batch 1's.
  want = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False)[0])(
      variables, np.transpose(images, (0, 2, 3, 1))))
  pairs = [(session.run(["features"], {"images": x})[0], want[:len(x)]) for x in (images, images[:1])]
  return pairs, onnx.load(str(out)), sorted(p.name for p in out.parent.iterdir())


def assert_close(pairs, what):
  for got, want in pairs:
    assert got.shape == want.shape
    diff = np.abs(got - want).max()
    print(f"{what} batch {len(got)}: max |onnx - jreid| {diff:.2e}, max |feature| {np.abs(want).max():.2f}")
    assert diff <= TOL


def test_resnet_ibn_gem_export_runs_in_onnxruntime_like_jreid(tmp_path, capsys):
  model_cfg = model_config("reid", "resnet18")  # strided 1x1 shortcuts, IBN-a, learnable GeM
  model_cfg.backbone.update(width=8, ibn="a")
  model_cfg.update(pooling="gem", gem_learnable=True)
  variables = random_variables(build_model(model_cfg, NUM_CLASSES), seed=1)
  pairs, model, files = exported_features(tmp_path, model_cfg, variables, capsys)
  with capsys.disabled():
    assert_close(pairs, "resnet18-ibn-a gem")
  assert files == ["model.onnx"]  # written through a temporary name, nothing left beside it
  dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
  assert [i.name for i in model.graph.input] == ["images"] and dims == ["batch", 3, *IMAGE]
  meta = {p.key: p.value for p in model.metadata_props}
  assert meta["layout"] == "NCHW" and json.loads(meta["mean"]) == list(MEAN)
  assert json.loads(meta["std"]) == list(STD) and (meta["height"], meta["width"]) == ("64", "32")


@pytest.mark.parametrize("name,options", [
    ("vit_small_ics", dict(embed_dim=64, depth=2, num_heads=4, stem_channels=8, stride=12)),
    ("clip_vit_b16", dict(embed_dim=64, depth=2, num_heads=4, proj_dim=32))])
def test_vit_export_runs_in_onnxruntime_like_jreid(tmp_path, capsys, name, options):
  model_cfg = model_config("reid", name)
  model_cfg.backbone.update(**options)
  model_cfg.test_feature = "pre_neck" if name.startswith("clip") else "neck"
  variables = random_variables(build_model(model_cfg, NUM_CLASSES), seed=2)
  pairs, _, _ = exported_features(tmp_path, model_cfg, variables, capsys)
  with capsys.disabled():
    assert_close(pairs, name)


def test_every_method_either_names_its_feature_or_is_refused():
  assert set(onnx_export.FEATURES) == set(methods.METHODS) - {"latent_diffusion"}
  config = load_config("configs/baseline.py:smoke")
  config.method = "latent_diffusion"
  with pytest.raises(ConfigError, match="method 'latent_diffusion' has no ReID test feature"):
    onnx_export.run_features(config, {"params": {}})


def test_bad_onnx_requests_are_clear_errors(tmp_path, capsys):
  run = tmp_path / "run"
  with pytest.raises(SystemExit):
    export_tool.main(["--checkpoint", str(run), "--out", str(tmp_path / "m.onnx"),
                      "--layout", "fastreid"])
  assert "an ONNX model has none" in capsys.readouterr().err
  assert export_tool.main(["--checkpoint", str(run), "--out", str(tmp_path / "m.bin"),
                           "--format", "onnx"]) == 1
  assert "written to a .onnx file, not m.bin" in capsys.readouterr().err
  assert export_tool.main(["--checkpoint", str(run), "--out", str(tmp_path / "m.onnx")]) == 1
  assert "no checkpoint folder" in capsys.readouterr().err
  with pytest.raises(WeightsFileError, match="not model.pth"):
    onnx_export.write_onnx(onnx.ModelProto(), tmp_path / "model.pth")


def test_a_backbone_without_an_onnx_form_is_refused_by_name():
  config = load_config("configs/baseline.py:smoke")
  config.model = model_config("reid", "resnest50")
  with pytest.raises(ConfigError, match="'resnest50' has no ONNX export .* exportable backbones: "):
    onnx_export.run_features(config, {"params": {}})
