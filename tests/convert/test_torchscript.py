"""TorchScript archives (how OpenAI released CLIP) read without torch, against torch's own state_dict.

The archives are made here with torch.jit.save from a small module laid out
like OpenAI's CLIP (`visual.conv1`, `visual.class_embedding`,
`visual.transformer.resblocks.N.attn` an nn.MultiheadAttention, `visual.proj`),
scripted and traced, in float32 and float16.
"""
import collections
import pickle
import struct
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from jreid.convert import load
from jreid.convert.torchscript import read_torchscript
from jreid.errors import WeightsFileError

torch.set_num_threads(1)
WIDTH, GRID, PATCH = 8, 2, 4


class Block(nn.Module):
  def __init__(self):
    super().__init__()
    self.attn = nn.MultiheadAttention(WIDTH, 2)
    self.ln_1 = nn.LayerNorm(WIDTH)
    self.mlp = nn.Sequential(collections.OrderedDict(
        [("c_fc", nn.Linear(WIDTH, 2 * WIDTH)), ("gelu", nn.GELU()),
         ("c_proj", nn.Linear(2 * WIDTH, WIDTH))]))
    self.ln_2 = nn.LayerNorm(WIDTH)

  def forward(self, x):
    y = self.ln_1(x)
    x = x + self.attn(y, y, y, need_weights=False)[0]
    return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
  def __init__(self, layers):
    super().__init__()
    self.resblocks = nn.ModuleList([Block() for _ in range(layers)])

  def forward(self, x):
    for block in self.resblocks:
      x = block(x)
    return x


class Visual(nn.Module):
  def __init__(self):
    super().__init__()
    self.conv1 = nn.Conv2d(3, WIDTH, PATCH, PATCH, bias=False)
    self.class_embedding = nn.Parameter(torch.randn(WIDTH))
    self.positional_embedding = nn.Parameter(torch.randn(GRID * GRID + 1, WIDTH))
    self.ln_pre = nn.LayerNorm(WIDTH)
    self.transformer = Transformer(2)
    self.ln_post = nn.LayerNorm(WIDTH)
    self.proj = nn.Parameter(torch.randn(WIDTH, 4))

  def forward(self, x):
    x = self.conv1(x).flatten(2).transpose(1, 2)
    cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype))
    x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    return self.ln_post(x[:, 0, :]) @ self.proj


class CLIPLike(nn.Module):
  def __init__(self):
    super().__init__()
    self.visual = Visual()
    self.logit_scale = nn.Parameter(torch.ones([]) * 2.5)
    self.register_buffer("input_resolution", torch.tensor(GRID * PATCH))

  def forward(self, x):
    return self.visual(x) * self.logit_scale.exp()


def randomized(module, seed=0):
  """Every parameter random (LayerNorm's ones/zeros would hide a swapped weight and bias)."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for p in module.parameters():
      p.copy_(torch.randn(p.shape, generator=generator))
  return module.eval()


def expected(module):
  """module.state_dict() as numpy, half widened to float32 as the reader does."""
  return {k: (v.float() if v.dtype == torch.half else v).numpy() for k, v in module.state_dict().items()}


def save(module, path, how):
  image = torch.randn(1, 3, GRID * PATCH, GRID * PATCH, dtype=next(module.parameters()).dtype)
  compiled = torch.jit.script(module) if how == "script" else torch.jit.trace(module, image)
  torch.jit.save(compiled, str(path))
  return path


def assert_same(got, want):
  assert list(got) == list(want)  # the names, in state_dict() order
  for name, value in want.items():
    assert got[name].dtype == value.dtype, name
    assert np.array_equal(got[name], value), name


@pytest.mark.parametrize("how", ["script", "trace"])
@pytest.mark.parametrize("half", [False, True])
def test_clip_like_archive_reads_as_its_state_dict(tmp_path, how, half):
  module = randomized(CLIPLike())
  if half:
    module = module.half()
  path = save(module, tmp_path / "ViT-tiny.pt", how)
  tensors = read_torchscript(path)
  assert_same(tensors, expected(module))
  assert "visual.transformer.resblocks.1.attn.in_proj_weight" in tensors
  assert tensors["visual.transformer.resblocks.0.attn.in_proj_weight"].shape == (3 * WIDTH, WIDTH)
  assert tensors["input_resolution"].dtype == np.int64
  if half:
    assert tensors["visual.proj"].dtype == np.float32


def test_read_state_dict_routes_archives_to_the_reader_without_torch(tmp_path, monkeypatch):
  module = randomized(CLIPLike(), seed=1)
  path = save(module, tmp_path / "clip.pt", "trace")

  def no_torch(where):
    raise AssertionError(f"torch was needed to read {where}")

  monkeypatch.setattr(load, "_import_torch", no_torch)
  assert_same(load.read_state_dict(path), expected(module))


@torch.jit.script
class Holder:
  """A TorchScript class (not a module): its tensors are not in any state_dict()."""

  def __init__(self, t: torch.Tensor):
    self.t = t


class Views(nn.Module):
  """Buffers that are views (offset, transposed), a non-persistent buffer, plain tensors."""

  def __init__(self):
    super().__init__()
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    self.register_buffer("base", base)
    self.register_buffer("tail", base[1:, 2:])  # shares base's storage at an offset
    self.register_buffer("transposed", torch.arange(12, dtype=torch.int32).reshape(3, 4).t())
    self.register_buffer("scratch", torch.ones(2), persistent=False)
    self.register_buffer("flags", torch.tensor([True, False]))
    self.plain = torch.full((3,), 7.0)  # an attribute, not a buffer: not in state_dict
    self.holder = Holder(torch.full((2,), 5.0))
    self.bare = nn.ParameterList([nn.Parameter(torch.randn(2, 2)), nn.Parameter(torch.randn(3))])
    self.lin = nn.Linear(2, 2)

  def forward(self, x):
    return (self.lin(x).sum() + self.base.sum() + self.tail.sum() + self.scratch.sum()
            + self.plain.sum() + self.holder.t.sum() + self.bare[0].sum() + self.bare[1].sum() + self.transposed.sum())


def test_views_parameter_lists_and_attributes_read_as_torch_jit_load_does(tmp_path):
  path = save(Views(), tmp_path / "views.pt", "script")
  # TorchScript forgets that a buffer is non-persistent: the loaded module's state_dict has it.
  reference = {k: v.numpy() for k, v in torch.jit.load(str(path)).state_dict().items()}
  assert "scratch" in reference and "bare.1" in reference
  assert "plain" not in reference and "holder.t" not in reference
  tensors = read_torchscript(path)
  assert_same(tensors, reference)
  assert np.array_equal(tensors["tail"], np.arange(24.0).reshape(4, 6)[1:, 2:])
  assert np.array_equal(tensors["transposed"], np.arange(12).reshape(3, 4).T)


class Evil:
  def __init__(self, command):
    self.command = command

  def __reduce__(self):
    import os
    return os.system, (self.command,)


def archive(path, data_pkl, extra=None, prefix="evil"):
  """A zip laid out like a TorchScript archive around the given data.pkl bytes."""
  with zipfile.ZipFile(path, "w") as out:
    out.writestr(f"{prefix}/data.pkl", data_pkl)
    out.writestr(f"{prefix}/constants.pkl", pickle.dumps((), protocol=2))
    for name, content in (extra or {}).items():
      out.writestr(f"{prefix}/{name}", content)
  return path


def test_a_global_outside_the_allow_list_is_refused_and_not_run(tmp_path):
  marker = tmp_path / "ran"
  payload = pickle.dumps({"weight": Evil(f"touch {marker}")}, protocol=2)
  path = archive(tmp_path / "evil.pt", payload)
  with pytest.raises(WeightsFileError, match=r"evil.pt: refused to unpickle the global (posix|os)\.system"):
    read_torchscript(path)
  with pytest.raises(WeightsFileError, match=r"refused to unpickle the global (posix|os)\.system"):
    load.read_state_dict(path)  # routed to the reader, not to torch.load
  assert not marker.exists()
  builtin = pickle.dumps({"x": eval}, protocol=4)  # STACK_GLOBAL builtins.eval
  with pytest.raises(WeightsFileError, match="refused to unpickle the global builtins.eval"):
    read_torchscript(archive(tmp_path / "eval.pt", builtin))


def test_a_persistent_id_that_is_not_a_storage_is_refused(tmp_path):
  class WithId(pickle.Pickler):
    def persistent_id(self, obj):
      return ("module", "os") if obj == "marker" else None

  import io
  buffer = io.BytesIO()
  WithId(buffer, protocol=2).dump({"x": "marker"})
  with pytest.raises(WeightsFileError, match=r"refused to unpickle persistent id \('module', 'os'\)"):
    read_torchscript(archive(tmp_path / "pid.pt", buffer.getvalue()))


def rewritten(source, target, change):
  """A copy of the zip `source` with each entry's bytes passed through change(name, bytes)."""
  with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as out:
    for name in src.namelist():
      content = change(name, src.read(name))
      if content is not None:
        out.writestr(name, content)
  return target


def one_line_error(path, pattern):
  with pytest.raises(WeightsFileError, match=pattern) as info:
    read_torchscript(path)
  assert "\n" not in str(info.value) and str(path) in str(info.value)
  return str(info.value)


def test_damaged_archives_are_one_line_errors(tmp_path):
  path = save(randomized(CLIPLike()), tmp_path / "clip.pt", "script")
  raw = path.read_bytes()
  (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
  one_line_error(tmp_path / "cut.pt", "cannot read .*cut.pt as a TorchScript archive")
  with pytest.raises(WeightsFileError, match="cannot read .*cut.pt as PyTorch weights"):
    load.read_state_dict(tmp_path / "cut.pt")  # no zip directory left: not seen as an archive
  # A flipped byte inside a storage: the zip's CRC check fails.
  damaged = bytearray(raw)
  with zipfile.ZipFile(path) as z:
    info = z.getinfo("clip/data/3")
  name_length, extra_length = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
  start = info.header_offset + 30 + name_length + extra_length  # the local header's own lengths
  damaged[start] ^= 0xFF
  (tmp_path / "flipped.pt").write_bytes(bytes(damaged))
  one_line_error(tmp_path / "flipped.pt", "Bad CRC-32")
  one_line_error(rewritten(path, tmp_path / "short.pt",
                           lambda n, b: b[:-4] if n == "clip/data/3" else b),
                 "storage 3 has .* bytes, fewer than")
  one_line_error(rewritten(path, tmp_path / "nostorage.pt",
                           lambda n, b: None if n == "clip/data/3" else b),
                 "damaged or truncated.*clip/data/3")
  one_line_error(rewritten(path, tmp_path / "pkl.pt",
                           lambda n, b: b[: len(b) // 2] if n == "clip/data.pkl" else b),
                 "cannot read .*pkl.pt as a TorchScript archive")
  torch.save({"w": torch.zeros(2)}, tmp_path / "plain.pth")
  one_line_error(tmp_path / "plain.pth", "is not a TorchScript archive")
