"""A DINO run exported as main_dino.py's checkpoint.pth, read by PyTorch references and by jreid.

The smoke pre-training (`configs/transreid_ssl.py:smoke`, an ICS ViT with
DINO's head) is exported with `--layout dino`. The torch side is written here
and in `benchmarks/torch_vit.py` from the published layouts: DINO's
`DINOHead` (Linear-GELU-Linear-GELU-Linear, `F.normalize`, a `weight_norm`
Linear with g filled with 1) inside its `MultiCropWrapper` (`backbone`,
`head`), DDP-wrapped (`module.`) as main_dino.py saves it.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from benchmarks import torch_vit
from jreid import methods
from jreid.config_blocks import load_config
from jreid.convert import export, load
from jreid.core.checkpoint import Checkpointer, open_existing
from jreid.core.state import TrainState
from jreid.errors import CheckpointMismatchError, WeightsFileError
from jreid.models.reid import build_model
from jreid.train import update
from tests.bad_inputs.conftest import cli, error_line

torch.set_num_threads(1)
TOL = 1e-5
SMOKE = "configs/transreid_ssl.py:smoke"


@pytest.fixture(scope="module")
def dino_run(synth_root, tmp_path_factory):
  """The smoke pre-training's workdir and its last raw state (numpy), trained once for the module."""
  workdir = tmp_path_factory.mktemp("dino_export") / "dino"
  done = cli("jreid.main", [f"--config={SMOKE}", f"--workdir={workdir}", f"--config.data.root={synth_root}"])
  assert done.code == 0, done.err[-2000:]
  checkpointer, step = open_existing(workdir)
  try:
    raw = checkpointer.restore_raw(step)
  finally:
    checkpointer.close()
  return workdir, raw


@pytest.fixture(scope="module")
def exported(dino_run, tmp_path_factory):
  """`python -m jreid.tools.export --layout dino` of the run, as torch.load reads it."""
  out = tmp_path_factory.mktemp("dino_out") / "checkpoint.pth"
  done = cli("jreid.tools.export", ["--checkpoint", str(dino_run[0]), "--out", str(out), "--layout", "dino"])
  assert done.code == 0, done.err[-2000:]
  assert "(dino layout)" in done.out and "not exported" not in done.out
  return out, torch.load(out, weights_only=True)


class DINOHead(nn.Module):
  """DINO's head as its vision_transformer.py defines it (use_bn=False, norm_last_layer=True)."""

  def __init__(self, in_dim, out_dim, hidden, bottleneck):
    super().__init__()
    self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                             nn.Linear(hidden, bottleneck))
    with pytest.warns(FutureWarning):  # torch >= 2.1 prefers parametrizations; DINO uses this one
      self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck, out_dim, bias=False))
    self.last_layer.weight_g.data.fill_(1)

  def forward(self, x):
    return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))


class MultiCropWrapper(nn.Module):
  def __init__(self, backbone, head):
    super().__init__()
    self.backbone, self.head = backbone, head

  def forward(self, x):
    return self.head(self.backbone(x))


class DDP(nn.Module):
  """What DistributedDataParallel adds to the names: `module.`."""

  def __init__(self, module):
    super().__init__()
    self.module = module


def torch_teacher(config):
  b, s = config.model.backbone, config.dino
  backbone = torch_vit.VisionTransformer(
      img_size=(config.data.height, config.data.width), patch_size=b.patch_size, stride=b.stride,
      embed_dim=b.embed_dim, depth=b.depth, num_heads=b.num_heads, stem_conv=True,
      stem_channels=b.stem_channels)
  return MultiCropWrapper(backbone, DINOHead(b.embed_dim, s.out_dim, s.hidden, s.bottleneck))


def jreid_teacher(config, raw, x):
  """The jreid teacher's (logits, CLS feature) on NCHW images `x`, BN on its running statistics."""
  method = methods.build(config, 0, update.factory(config, config.train.steps))
  logits, intermediates = method.impl.teacher_model.apply(
      {"params": raw["teacher_params"], "batch_stats": raw["teacher_batch_stats"]},
      jnp.asarray(np.transpose(x, (0, 2, 3, 1))), train=False)
  return np.asarray(logits), np.asarray(intermediates["pre_neck"])


def fresh_dino_variables(config):
  method = methods.build(config, 0, update.factory(config, config.train.steps))
  variables = method.impl.model.init(jax.random.key(7), jnp.zeros((1, config.data.height,
                                                                   config.data.width, 3)), train=False)
  return jax.tree.map(np.asarray, dict(variables))


def assert_trees_equal(got, want):
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(a, b)


def images(config, n=3):
  return np.random.default_rng(0).normal(size=(n, 3, config.data.height, config.data.width)).astype(np.float32)


def test_the_checkpoint_holds_teacher_student_and_centre_in_dinos_names(exported, dino_run):
  _, content = exported
  raw = dino_run[1]
  config = load_config(SMOKE)
  depth, out_dim = config.model.backbone.depth, config.dino.out_dim
  assert sorted(content) == ["dino_loss", "student", "teacher"]
  block = ["norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"]
  stem = ([f"patch_embed.conv.{i}.weight" for i in (0, 3, 6)]
          + [f"patch_embed.conv.{i}.{part}.{leaf}" for i in (1, 4) for part in ("IN", "BN")
             for leaf in ("weight", "bias")]
          + [f"patch_embed.conv.{i}.BN.{stat}" for i in (1, 4)
             for stat in ("running_mean", "running_var", "num_batches_tracked")]
          + [f"patch_embed.conv.7.{leaf}" for leaf in ("weight", "bias", "running_mean", "running_var",
                                                       "num_batches_tracked")])
  backbone = (["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
               "norm.weight", "norm.bias"] + stem
              + [f"blocks.{i}.{m}.{leaf}" for i in range(depth) for m in block for leaf in ("weight", "bias")])
  head = [f"mlp.{i}.{leaf}" for i in (0, 2, 4) for leaf in ("weight", "bias")] + [
      "last_layer.weight_g", "last_layer.weight_v"]
  names = sorted([f"backbone.{n}" for n in backbone] + [f"head.{n}" for n in head])
  # The ICS stem has BatchNorm, so main_dino.py DDP-wraps the teacher too (for SyncBN): `module.` on both.
  assert sorted(content["student"]) == sorted(content["teacher"]) == [f"module.{n}" for n in names]
  for part in ("teacher", "student"):
    g = content[part]["module.head.last_layer.weight_g"]
    assert g.shape == (out_dim, 1) and torch.equal(g, torch.ones(out_dim, 1))
  # Layouts by hand, on the student: torch's (out, in) Linear weights and timm's token shapes.
  student, params = content["student"], raw["params"]
  for i in (0, 2, 4):
    np.testing.assert_array_equal(student[f"module.head.mlp.{i}.weight"].numpy(),
                                  params["projector"][f"mlp_{i}"]["kernel"].T)
  np.testing.assert_array_equal(student["module.head.last_layer.weight_v"].numpy(),
                                params["projector"]["last_layer"]["weight_v"].T)
  bb = params["backbone"]
  np.testing.assert_array_equal(student["module.backbone.cls_token"].numpy(), bb["cls_token"][None, None])
  np.testing.assert_array_equal(
      student["module.backbone.pos_embed"].numpy()[0],
      np.concatenate([bb["cls_pos_embed"][None], bb["pos_embed"].reshape(-1, bb["pos_embed"].shape[-1])]))
  np.testing.assert_array_equal(content["dino_loss"]["center"].numpy(), raw["center"][None])
  assert not torch.equal(content["teacher"]["module.head.mlp.0.weight"], student["module.head.mlp.0.weight"])


def test_dinos_head_in_torch_gives_jreids_teacher_logits(exported, dino_run):
  """The exported teacher head in an independent torch DINOHead, applied to the teacher's jreid
  backbone feature, and the whole teacher network in torch, give jreid's teacher logits."""
  _, content = exported
  config = load_config(SMOKE)
  teacher = DDP(torch_teacher(config))
  teacher.load_state_dict(content["teacher"], strict=True)
  teacher.eval()
  x = images(config)
  logits, feature = jreid_teacher(config, dino_run[1], x)
  with torch.no_grad():
    head_only = teacher.module.head(torch.tensor(feature)).numpy()
    torch_feature = teacher.module.backbone(torch.from_numpy(x)).numpy()
    whole = teacher.module(torch.from_numpy(x)).numpy()
  assert np.abs(logits).max() > 1e-2  # not a comparison of zeros
  np.testing.assert_allclose(head_only, logits, atol=TOL, rtol=0)
  np.testing.assert_allclose(torch_feature, feature, atol=TOL, rtol=0)
  np.testing.assert_allclose(whole, logits, atol=TOL, rtol=0)
  # The last layer's weight is v / ||v|| per output unit: every row has norm 1, as jreid's fixed norm.
  weight = teacher.module.head.last_layer.weight.detach().numpy()
  np.testing.assert_allclose(np.linalg.norm(weight, axis=1), 1.0, atol=1e-6)


def test_jreid_reads_the_teacher_and_the_student_back_exactly(exported, dino_run, synth_root):
  out, content = exported
  raw = dino_run[1]
  config = load_config(SMOKE)
  # The file as jreid's import path reads it: the teacher is picked, backbone and head fill a DINO model.
  variables, report = load.load_torch_weights(out, fresh_dino_variables(config))
  assert_trees_equal(variables["params"], raw["teacher_params"])
  assert_trees_equal(variables["batch_stats"], raw["teacher_batch_stats"])
  assert not report.missing and not report.skipped
  # weight_g: ones, the fixed norm jreid has no param for; the ICS stem's BN counters.
  counters = [f"module.backbone.patch_embed.conv.{i}.num_batches_tracked" for i in ("1.BN", "4.BN", "7")]
  assert sorted(report.ignored) == sorted(["module.head.last_layer.weight_g"] + counters)
  # ... and the backbone part a ViT ReID model (configs/vit.py:smoke), whose head stays as it was.
  vit_config = load_config("configs/vit.py:smoke")
  model = build_model(vit_config.model, 5)
  vit = model.init(jax.random.key(0), jnp.zeros((1, 32, 16, 3)), train=False)
  merged, report = load.load_torch_weights(out, vit)
  assert_trees_equal(merged["params"]["backbone"], raw["teacher_params"]["backbone"])
  assert_trees_equal(merged["batch_stats"]["backbone"], raw["teacher_batch_stats"]["backbone"])
  assert all(name.startswith(("params/head", "batch_stats/head")) for name in report.missing)
  # The student, `module.` stripped, is the run's params.
  student = {name: value.numpy() for name, value in content["student"].items()}
  variables, _ = load.merge_state_dict(fresh_dino_variables(config), student, source="student")
  assert_trees_equal(variables["params"], raw["params"])
  assert_trees_equal(variables["batch_stats"], raw["batch_stats"])


def test_a_plain_export_of_a_dino_run_writes_its_teacher_backbone(dino_run, tmp_path):
  workdir, raw = dino_run
  result = export.export_checkpoint(workdir, tmp_path / "teacher.safetensors")
  assert result.layout == "timm" and all(s.startswith("params/projector/") for s in result.skipped)
  vit_config = load_config("configs/vit.py:smoke")
  vit = build_model(vit_config.model, 5).init(jax.random.key(0), jnp.zeros((1, 32, 16, 3)), train=False)
  merged, _ = load.load_torch_weights(result.out, vit)
  assert_trees_equal(merged["params"]["backbone"], raw["teacher_params"]["backbone"])
  assert not np.array_equal(raw["params"]["backbone"]["cls_token"], raw["teacher_params"]["backbone"]["cls_token"])


@pytest.fixture
def vit_run(tmp_path):
  """A checkpoint of configs/vit.py:smoke's model (one model, no teacher), written as the loop does."""
  config = load_config("configs/vit.py:smoke")
  variables = build_model(config.model, 5).init(jax.random.key(0), jnp.zeros((1, 32, 16, 3)), train=False)
  params = jax.tree.map(np.asarray, variables["params"])
  state = TrainState(step=np.int32(2), params=params, batch_stats=jax.tree.map(np.asarray, variables["batch_stats"]),
                     opt_state=(jax.tree.map(np.zeros_like, params),))
  checkpointer = Checkpointer(tmp_path / "vit" / "checkpoints")
  checkpointer.save(2, state, {"next_index": 0})
  checkpointer.wait()
  checkpointer.close()
  return tmp_path / "vit", variables


def test_layout_dino_without_a_teacher_names_the_layouts_that_fit(vit_run, tmp_path):
  workdir, variables = vit_run
  out = tmp_path / "out" / "checkpoint.pth"
  with pytest.raises(CheckpointMismatchError, match=r"layout 'dino' writes a DINO run's teacher and "
                     r"student together.*; its layouts are \['timm', 'transreid'\]"):
    export.export_checkpoint(workdir, out, layout="dino")
  line = error_line(cli("jreid.tools.export", ["--checkpoint", str(workdir), "--out", str(out),
                                               "--layout", "dino"]), "jreid.tools.export")
  assert "its layouts are ['timm', 'transreid']" in line
  with pytest.raises(CheckpointMismatchError, match=r"its layouts are \['timm', 'transreid'\]"):
    export.export_variables(variables, out, layout="dino")
  # A teacher without DINO's head (another projector, none) cannot be DINO's MultiCropWrapper.
  headless = export.RunVariables(model=variables, teacher=variables)
  with pytest.raises(CheckpointMismatchError, match=r"needs DINO's projection head .* in "
                     r"teacher_params; it has none"):
    export.export_dino(headless, out, source="run")
  assert not out.parent.exists()


def test_layout_dino_refuses_safetensors_before_reading_the_checkpoint(tmp_path):
  with pytest.raises(WeightsFileError, match=r"only PyTorch's format holds: name the output "
                     r"checkpoint\.pth \(or write the teacher's backbone alone as \.safetensors "
                     r"with --layout timm\)"):
    export.export_checkpoint(tmp_path / "no_such_run", tmp_path / "checkpoint.safetensors", layout="dino")
  assert not list(tmp_path.iterdir())
