"""Tensors of a TorchScript archive (`torch.jit.save`), read without torch or running its code.

OpenAI's released CLIP files (`ViT-B-16.pt`) are TorchScript archives:
`torch.load(weights_only=True)` refuses them and `torch.jit.load` compiles
and runs the code stored in them. The weights themselves are plain data: a
zip holding `<prefix>/data.pkl`, a pickle of the module tree, and one raw
little-endian file per storage under `<prefix>/data/<key>`. In the pickle a
module is `GLOBAL '__torch__.<path> <Class>'` + NEWOBJ + BUILD with a dict
of its attributes (tensors, submodules, `training` and other plain values);
a tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
requires_grad, OrderedDict())` with the storage a persistent id
`('storage', torch.FloatStorage, '<key>', '<device>', numel)`; scripted
modules' int-list attributes go through `torch.jit._pickle.build_intlist`.

`read_torchscript` unpickles with an allow-list of exactly those globals,
each mapped to a function of this module (nothing of torch is imported or
called), and names the tensors as `state_dict()` does: parameters, then
buffers, then submodules, joined by dots. Which attributes are parameters or
buffers is declared in the archive's `code/` as
`__parameters__ = [...]` / `__buffers__ = [...]` (read as text, never run);
for a class without those declarations every tensor attribute is taken.
"""
from __future__ import annotations

import ast
import collections
import pickle
import re
import struct
import zipfile
import zlib

import numpy as np

from jreid.errors import WeightsFileError

# torch's legacy storage classes (what TorchScript's pickler writes) -> numpy dtypes.
# bfloat16 has no numpy dtype: its 16-bit patterns are widened to float32 (`_widen`).
STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_, "ComplexDoubleStorage": np.complex128,
    "ComplexFloatStorage": np.complex64,
}


class _Refused(Exception):
  """A pickle global or persistent id outside the allow-list (becomes a WeightsFileError)."""


class ScriptObject:
  """Stands in for a `__torch__.*` TorchScript class instance: its type name and pickled state."""

  type_name = "__torch__"
  state = None  # NEWOBJ makes instances without __init__; BUILD (if any) sets the state

  def __init__(self, *args):
    pass

  def __setstate__(self, state):
    self.state = state

  def __repr__(self):
    return f"<{self.type_name}>"


class _StorageType:
  """The value of `GLOBAL 'torch FloatStorage'` etc.: only names the element type."""

  def __init__(self, name: str):
    self.name, self.dtype = name, STORAGE_DTYPES[name]


def _as_is(value, *_):
  """`torch.jit._pickle.build_intlist` & co. and `restore_type_tag` return their first argument."""
  return value


def _tensor_from_id(value):
  """`build_tensor_from_id` (tensor constants by index): the index, as torch itself returns it."""
  return value if isinstance(value, int) else None


class _Reader:
  """The zip, its prefix and the storages read so far (tensors may share one storage)."""

  def __init__(self, archive: zipfile.ZipFile, prefix: str, byteorder: str):
    self.archive, self.prefix, self.byteorder = archive, prefix, byteorder
    self.storages: dict[str, np.ndarray] = {}

  def storage(self, pid) -> np.ndarray:
    if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
        or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
        or not isinstance(pid[4], int) or pid[4] < 0):
      raise _Refused(f"persistent id {pid!r} (expected ('storage', <type>, key, device, numel))")
    kind, key, numel = pid[1], pid[2], pid[4]
    if key not in self.storages:
      raw = self.archive.read(f"{self.prefix}/data/{key}")
      dtype = np.dtype(np.uint16 if kind.dtype == "bfloat16" else kind.dtype)
      dtype = dtype.newbyteorder("<" if self.byteorder == "little" else ">")
      if len(raw) < numel * dtype.itemsize:
        raise ValueError(f"storage {key} has {len(raw)} bytes, fewer than its {numel} "
                         f"{kind.name} elements need")
      array = np.frombuffer(raw, dtype=dtype, count=numel)
      self.storages[key] = (array.astype(np.float32) if kind.dtype == np.float16
                            else _widen(array) if kind.dtype == "bfloat16"
                            else array.astype(dtype.newbyteorder("=")))
    return self.storages[key]


def _widen(bits: np.ndarray) -> np.ndarray:
  """bfloat16 bit patterns -> float32 (bfloat16 is the top half of a float32)."""
  return (bits.astype(np.uint32) << 16).view(np.float32)


def _rebuild_tensor(storage, offset, size, stride, *rest):
  """A numpy copy of the view (offset, size, stride in elements) of a storage.

  `rest` is `_rebuild_tensor_v2`'s (requires_grad, backward_hooks[, metadata]);
  only metadata matters (conj/neg bits), which numpy cannot hold, so it is refused.
  """
  if len(rest) > 2 and rest[2]:
    raise _Refused(f"tensor metadata {rest[2]!r}")
  if not isinstance(storage, np.ndarray):
    raise ValueError(f"a tensor whose storage is {type(storage).__name__}, not a storage")
  size, stride = tuple(size), tuple(stride)
  if (len(size) != len(stride) or not all(isinstance(v, int) for v in (offset, *size, *stride))
      or offset < 0 or min(size + stride, default=0) < 0):
    raise ValueError(f"tensor view offset={offset} size={size} stride={stride} is not valid")
  if 0 in size:
    return np.zeros(size, storage.dtype)
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= storage.size:
    raise ValueError(f"tensor view offset={offset} size={size} stride={stride} reaches element "
                     f"{last} of a storage of {storage.size}")
  view = np.lib.stride_tricks.as_strided(storage[offset:], size,
                                         tuple(s * storage.itemsize for s in stride))
  return np.array(view)


def _rebuild_parameter(data, *_):
  """`torch._utils._rebuild_parameter(data, requires_grad, hooks[, state])`: the tensor itself."""
  return data


ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch.jit._pickle", "build_intlist"): _as_is,
    ("torch.jit._pickle", "build_doublelist"): _as_is,
    ("torch.jit._pickle", "build_boollist"): _as_is,
    ("torch.jit._pickle", "build_tensorlist"): _as_is,
    ("torch.jit._pickle", "build_tensor_from_id"): _tensor_from_id,
    ("torch.jit._pickle", "restore_type_tag"): _as_is,
}


class _Unpickler(pickle.Unpickler):
  """Resolves only the allow-listed globals, to this module's functions; storages from the zip."""

  def __init__(self, file, reader: _Reader):
    super().__init__(file)
    self.reader = reader
    self.classes: dict[str, type] = {}

  def find_class(self, module, name):
    if (module, name) in ALLOWED:
      return ALLOWED[module, name]
    if module == "torch" and name in STORAGE_DTYPES:
      return _StorageType(name)
    if module == "__torch__" or module.startswith("__torch__."):
      qualified = f"{module}.{name}"
      if qualified not in self.classes:
        self.classes[qualified] = type(name, (ScriptObject,), {"type_name": qualified})
      return self.classes[qualified]
    raise _Refused(f"the global {module}.{name}")

  def persistent_load(self, pid):
    return self.reader.storage(pid)


_DECLARED = re.compile(r"^  (__parameters__|__buffers__) = (\[.*\])$", re.M)


def _declarations(archive: zipfile.ZipFile, prefix: str, type_name: str):
  """(is a module, declared parameter/buffer names or None) from the class's code file.

  `__torch__.torch.nn.modules.conv.Conv2d` is `class Conv2d(Module):` in
  `code/__torch__/torch/nn/modules/conv.py`; a TorchScript class that is not
  a module (`class Holder:`) holds no state_dict() tensors; a class that
  cannot be found is taken as a module without declarations.
  """
  module, _, name = type_name.rpartition(".")
  try:
    source = archive.read(f"{prefix}/code/{module.replace('.', '/')}.py").decode("utf-8")
  except (KeyError, UnicodeDecodeError):
    return True, None
  match = re.search(rf"^class {re.escape(name)}(?:\((\w+)\))?:\n((?:[ \t].*\n?|\n)*)", source, re.M)
  if match is None:
    return True, None
  found = dict(_DECLARED.findall(match.group(2)))
  if set(found) != {"__parameters__", "__buffers__"}:
    return match.group(1) == "Module", None
  names = []
  for key in ("__parameters__", "__buffers__"):
    listed = ast.literal_eval(found[key])
    if not all(isinstance(n, str) for n in listed):
      return match.group(1) == "Module", None
    names += listed
  return match.group(1) == "Module", names


def _name_tensors(root, archive: zipfile.ZipFile, prefix: str) -> dict[str, np.ndarray]:
  """`state_dict()` of the module tree: own parameters and buffers, then submodules, dot-joined."""
  tensors: dict[str, np.ndarray] = {}
  known: dict[str, tuple] = {}
  stack = [("", root)]
  while stack:
    path, obj = stack.pop()
    if obj.type_name not in known:
      known[obj.type_name] = _declarations(archive, prefix, obj.type_name)
    is_module, declared = known[obj.type_name]
    state = obj.state if isinstance(obj.state, dict) else {}
    if not is_module:
      continue
    names = declared if declared is not None else [k for k, v in state.items()
                                                   if isinstance(v, np.ndarray)]
    for name in names:
      if isinstance(state.get(name), np.ndarray):  # a declared `bias` may be None
        tensors[path + name] = state[name]
    children = [(path + k + ".", v) for k, v in state.items() if isinstance(v, ScriptObject)]
    stack.extend(reversed(children))
  return tensors


def archive_prefix(archive: zipfile.ZipFile) -> str | None:
  """The folder holding `data.pkl` if the zip is a TorchScript archive (it has `code/` or
  `constants.pkl`, which `torch.save` files lack), else None."""
  names = archive.namelist()
  for name in names:
    parts = name.split("/")
    if len(parts) == 2 and parts[1] == "data.pkl":
      prefix = parts[0]
      if f"{prefix}/constants.pkl" in names or any(n.startswith(f"{prefix}/code/") for n in names):
        return prefix
  return None


def read_torchscript(path) -> dict[str, np.ndarray]:
  """The parameters and buffers of a TorchScript archive by their `state_dict()` names.

  Half and bfloat16 tensors come out as float32 (as `load._to_numpy` does).
  Raises WeightsFileError (one line, naming the file) for a file that is not
  such an archive, is damaged, or whose pickle needs anything outside the
  allow-list (the refused global is named; nothing of it is run).
  """
  try:
    with zipfile.ZipFile(path) as archive:
      prefix = archive_prefix(archive)
      if prefix is None:
        raise WeightsFileError(f"{path} is not a TorchScript archive (no <prefix>/data.pkl next to "
                               "code/ or constants.pkl)")
      try:
        byteorder = archive.read(f"{prefix}/byteorder").decode("ascii").strip()
      except KeyError:
        byteorder = "little"  # archives older than the byteorder record are little-endian
      if byteorder not in ("little", "big"):
        raise ValueError(f"byteorder record says {byteorder!r}")
      reader = _Reader(archive, prefix, byteorder)
      with archive.open(f"{prefix}/data.pkl") as data:
        root = _Unpickler(data, reader).load()
      if not isinstance(root, ScriptObject):
        raise ValueError(f"data.pkl holds a {type(root).__name__}, not a TorchScript module")
      tensors = _name_tensors(root, archive, prefix)
  except WeightsFileError:
    raise
  except _Refused as err:
    raise WeightsFileError(f"{path}: refused to unpickle {err} (only tensors, storages and "
                           "TorchScript module attributes are read)") from None
  except (zipfile.BadZipFile, KeyError, pickle.UnpicklingError, EOFError, ValueError, TypeError,
          IndexError, AttributeError, struct.error, zlib.error, OSError, RecursionError,
          MemoryError) as err:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    raise WeightsFileError(f"cannot read {path} as a TorchScript archive (damaged or "
                           f"truncated?): {first}") from None
  if not tensors:
    raise WeightsFileError(f"{path} is a TorchScript archive without parameters or buffers")
  return tensors
