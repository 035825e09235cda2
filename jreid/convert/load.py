"""Load PyTorch weights into a jreid ReID model: torchvision, FastReID and LUPerson MoCo ResNets,
timm / DINO / TransReID-SSL ViTs, OpenAI and Hugging Face CLIP towers.

    variables, report = load_torch_weights("resnet50_ibn_a.pth", variables)
    print(report.summary())

Files are read without executing pickled code: `.safetensors` through
safetensors (no torch needed), TorchScript archives (OpenAI's CLIP `.pt`)
through `jreid.convert.torchscript` (no torch needed either), everything else
through `torch.load(weights_only=True)`, which refuses any object other than
tensors and plain containers; `argparse.Namespace` is allowed in addition,
because DINO's `checkpoint.pth` stores its training arguments as one.
Checkpoints that nest the weights (DINO's `{"teacher": ..., "student": ...}`,
`{"state_dict": ...}` of MoCo / `.pth.tar`, `{"model": ...}` of FastReID) are
unwrapped, and the wrapper prefixes of DataParallel (`module.`), FastReID and
DINO (`backbone.`), MoCo (`encoder_q.`) and some ReID repos (`base.`) are
stripped, so one loader reads all of them.

Only names *and* shapes that fit the target are copied (or shapes the
architecture's map resizes, e.g. a ViT's position embeddings); everything
else stays as initialised and is listed in the report by name, because the
usual case is partial: an ImageNet backbone without a head, or a FastReID
model whose classifier was trained on another number of identities.

Everything that depends on the architecture (names, layouts, MGN's branch
copies, resizing) comes from its `jreid.convert.maps.WeightMap`; this module
is the generic part.

What is copied into a floating-point variable must be a finite float tensor,
and a BatchNorm running variance must not be negative: an integer or boolean
tensor (a quantised or mis-exported file), a NaN/inf value or a negative
variance would load without complaint and train to garbage, or evaluate to
NaN features (`check_tensor`). Such a file is refused, naming the tensor.
Tensors that are not copied (BN's integer `num_batches_tracked`, unused or
mismatched names) are not checked: they never reach the model.
"""
from __future__ import annotations

import argparse
import dataclasses
import pathlib
import re
import zipfile
from collections.abc import Mapping

import numpy as np

from jreid.convert import maps, torch_names, torchscript
from jreid.errors import CheckpointMismatchError, WeightsFileError

STRIPPED_PREFIXES = ("module.", "encoder_q.", "backbone.", "base.")
# In this order: DINO evaluates (and TransReID-SSL fine-tunes from) the teacher, not the student.
NESTING_KEYS = ("teacher", "student", "state_dict", "model")
# Classes torch.load may build besides tensors: DINO's `args`. Only plain data, no behaviour.
SAFE_CLASSES = (argparse.Namespace,)


@dataclasses.dataclass
class LoadReport:
  """What a load did. Names are the source's (as written there) except `missing` (the model's).

  `loaded` lists every source tensor copied into the model, `resized` ones
  included; `resized` holds (name, shape in the source, shape the model
  needs) for those the architecture's map adapted. `mismatched` holds (name,
  shape in the source, shape the model needs), both in the source's layout,
  and `unused` the names the model has no variable for: together they are
  `skipped`. `ignored` holds names skipped on purpose: BN's
  `num_batches_tracked`, an ImageNet `fc`, a zero neck bias the model has no
  parameter for.
  """
  loaded: list[str] = dataclasses.field(default_factory=list)
  missing: list[str] = dataclasses.field(default_factory=list)
  unused: list[str] = dataclasses.field(default_factory=list)
  mismatched: list[tuple[str, tuple, tuple]] = dataclasses.field(default_factory=list)
  ignored: list[str] = dataclasses.field(default_factory=list)
  resized: list[tuple[str, tuple, tuple]] = dataclasses.field(default_factory=list)

  @property
  def skipped(self) -> list[tuple[str, str]]:
    """(name, why) of every source tensor that was not copied and not ignored on purpose."""
    return ([(n, f"shape mismatch: {tuple(a)} vs model {tuple(b)}") for n, a, b in self.mismatched]
            + [(n, "not in the model") for n in self.unused])

  def summary(self, limit: int = 5) -> str:
    lines = [f"loaded {len(self.loaded)} arrays"]
    for label, items in (("resized", [f"{n} {a} -> {b}" for n, a, b in self.resized]),
                         ("missing from the file", self.missing),
                         ("not used by the model", self.unused),
                         ("shape mismatch", [f"{n} {a} vs model {b}" for n, a, b in self.mismatched])):
      if items:
        lines.append(f"{len(items)} {label}: {_few(items, limit)}")
    return "; ".join(lines)


def _few(items, limit: int) -> str:
  more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
  return ", ".join(map(str, items[:limit])) + more


def resized_and_skipped(report: LoadReport, limit: int = 10) -> str:
  """The `init_from` log's account of tensors not copied as they are, by name ("" if none).

  E.g. "; resized 1: pos_embed (1, 197, 384) -> (1, 129, 384); skipped 2:
  heads.weight (shape mismatch: (751, 512) vs model (6, 512)), queue (not in
  the model)". `limit` names per group keep a MoCo file's hundreds of key-
  encoder tensors from flooding the log; the count is always complete.
  """
  parts = []
  if report.resized:
    parts.append(f"resized {len(report.resized)}: "
                 + _few([f"{n} {tuple(a)} -> {tuple(b)}" for n, a, b in report.resized], limit))
  skipped = report.skipped
  if skipped:
    parts.append(f"skipped {len(skipped)}: " + _few([f"{n} ({why})" for n, why in skipped], limit))
  return "".join(f"; {part}" for part in parts)


def _import_torch(path):
  try:
    import torch
  except ImportError:
    raise WeightsFileError(f"reading {path} needs PyTorch: pip install 'jreid[torch]' "
                           "(or convert the file to .safetensors)") from None
  return torch


def _to_numpy(tensor) -> np.ndarray:
  """A CPU numpy copy; half and bfloat16 go through float32 (numpy has no bfloat16)."""
  tensor = tensor.detach().cpu()
  if tensor.is_floating_point() and tensor.element_size() < 4:
    tensor = tensor.float()
  return tensor.numpy()


def _is_torchscript(path: pathlib.Path) -> bool:
  """A zip with `code/` or `constants.pkl` beside its data.pkl (torch.jit.save, not torch.save)."""
  if not zipfile.is_zipfile(path):
    return False
  try:
    with zipfile.ZipFile(path) as archive:
      return torchscript.archive_prefix(archive) is not None
  except (zipfile.BadZipFile, OSError):
    return False  # torch.load then says why it cannot read the file


def _first_line(err: Exception) -> str:
  """The informative line of a torch.load error: the weights-only unpickler's reason if any."""
  text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
  reason = re.search(r"WeightsUnpickler error: (.*?\.)(?: |$)", text, re.M)
  if reason:
    return reason.group(1)
  return text.splitlines()[0] if text else type(err).__name__


def read_state_dict(path: str | pathlib.Path) -> dict[str, np.ndarray]:
  """The tensors of a weights file, by their names in the file (nesting removed, prefixes kept)."""
  path = pathlib.Path(path).expanduser()
  if not path.is_file():
    raise WeightsFileError(f"no weights file at {path}: download the .pth/.safetensors file "
                           "yourself and give its path (jreid downloads nothing)")
  if path.suffix == ".safetensors":
    from safetensors.numpy import load_file
    try:
      return dict(load_file(str(path)))
    except Exception as err:  # safetensors raises its own error types for bad headers
      raise WeightsFileError(f"cannot read {path} as safetensors: {err}") from None
  if _is_torchscript(path):
    return torchscript.read_torchscript(path)
  torch = _import_torch(path)
  try:
    with torch.serialization.safe_globals(list(SAFE_CLASSES)):  # for this call only
      content = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as err:  # UnpicklingError, RuntimeError (not a zip), EOFError, ...
    first = _first_line(err)
    raise WeightsFileError(f"cannot read {path} as PyTorch weights (read with weights_only=True, "
                           f"which refuses pickled objects other than tensors): {first}") from None
  while isinstance(content, Mapping):
    nested = next((content[k] for k in NESTING_KEYS if isinstance(content.get(k), Mapping)), None)
    if nested is None:
      break
    content = nested
  tensors = ({k: _to_numpy(v) for k, v in content.items() if isinstance(v, torch.Tensor)}
             if isinstance(content, Mapping) else {})
  if not tensors:
    raise WeightsFileError(f"{path} holds no tensors (expected a state dict, possibly under "
                           f"one of the keys {NESTING_KEYS})")
  return tensors


def strip_prefixes(name: str) -> str:
  """`module.encoder_q.conv1.weight` -> `conv1.weight`: wrapper prefixes, any order, repeated."""
  stripped = True
  while stripped:
    stripped = False
    for prefix in STRIPPED_PREFIXES:
      if name.startswith(prefix):
        name, stripped = name[len(prefix):], True
  return name


def check_tensor(source: str, name: str, value: np.ndarray, key: torch_names.Key, leaf) -> None:
  """Refuses `value` (tensor `name` of `source`) as the model variable `key` if it cannot be one.

  Only floating-point targets are checked (a model's integer leaves take what
  fits); the source must then be a float tensor with finite values, and
  non-negative for a BatchNorm variance (`batch_stats/.../var`).
  """
  wanted = np.dtype(getattr(leaf, "dtype", np.float32))
  if wanted.kind in "iub":
    return
  target = "/".join((key[0],) + key[1])
  if value.dtype.kind != "f":
    raise WeightsFileError(f"{source}: tensor {name} is {value.dtype}, but the model's {target} is "
                           f"{wanted.name}: a weights file must hold floating-point parameters "
                           "(is it a quantised or wrongly exported file?)")
  finite = np.isfinite(value)
  if not finite.all():
    raise WeightsFileError(f"{source}: tensor {name} (the model's {target}) holds "
                           f"{value.size - int(finite.sum())} NaN/inf values of {value.size}: the "
                           "file is damaged or comes from a diverged run")
  if key[0] == "batch_stats" and key[1][-1] == "var" and (value < 0).any():
    raise WeightsFileError(f"{source}: tensor {name} (BatchNorm running variance, the model's "
                           f"{target}) has {int((value < 0).sum())} negative values (min "
                           f"{float(value.min()):g}); a variance is >= 0, so the file is damaged "
                           "(evaluating with it would give NaN features)")


def canonical_names(state_dict: Mapping[str, np.ndarray], source: str
                    ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """The tensors by canonical name (wrapper prefixes stripped) and each canonical name's original."""
  canonical, origin = {}, {}
  for name in sorted(state_dict):
    stripped = strip_prefixes(name)
    if stripped in origin:
      raise CheckpointMismatchError(f"{source}: {name} and {origin[stripped]} both map to "
                                    f"{stripped}; remove one of them")
    canonical[stripped], origin[stripped] = np.asarray(state_dict[name]), name
  return canonical, origin


def _file_name(canonical_name: str, origin: Mapping[str, str]) -> str:
  """The file's name for a canonical one: a tensor the map prefixed (a bare CLIP tower's `visual.`)
  or split (`pos_embed` -> `pos_embed.cls`, `.grid`) is reported as the file has it."""
  for candidate in (canonical_name, canonical_name.rpartition(".")[0]):
    if candidate in origin:
      return origin[candidate]
    suffixes = [stripped for stripped in origin if candidate.endswith("." + stripped)]
    if candidate and suffixes:
      return origin[max(suffixes, key=len)]
  return canonical_name


def _examples(pairs, limit: int = 3) -> str:
  return ", ".join(f"{name} {tuple(shape)}" for name, shape in pairs[:limit])


def _nothing_fits(source: str, state: Mapping[str, np.ndarray], target, weight_map,
                  report: LoadReport) -> CheckpointMismatchError:
  """Names the file's tensors and the model's, with shapes: the two sides of a wrong file."""
  expected = [(weight_map.torch_name(key), weight_map.to_torch(key[1], np.empty(np.shape(leaf))).shape)
              for key, leaf in target.items() if weight_map.torch_name(key)]
  found = [(name, value.shape) for name, value in state.items()
           if not weight_map.ignored(name, value)] or [(n, v.shape) for n, v in state.items()]
  shapes = (f"; shapes differ, e.g. {report.mismatched[0][0]} is {report.mismatched[0][1]} in the "
            f"file, {report.mismatched[0][2]} in the model" if report.mismatched else "")
  return CheckpointMismatchError(
      f"{source}: none of its {len(state)} tensors fits this model (a different architecture or "
      f"width?){shapes}; expected e.g. {_examples(expected)}; found e.g. {_examples(found)}")


def merge_state_dict(variables: Mapping, state_dict: Mapping[str, np.ndarray], *,
                     source: str = "the state dict", weights: str | None = None
                     ) -> tuple[dict, LoadReport]:
  """Copies the tensors of `state_dict` that fit `variables` (a full model's variables).

  `weights` names the `jreid.convert.maps.WEIGHT_MAPS` entry to use; by
  default the one that claims `variables`. Returns new `{"params",
  "batch_stats"}` trees (plain dicts; unloaded leaves are the target's own)
  and the report, which names the file's tensors as written there (a
  tensor the map split, such as a ViT's position embedding, by its parts).
  Raises CheckpointMismatchError if nothing fits, which means the file is for
  another architecture (or another width), and WeightsFileError if a tensor
  it would copy is not a valid value (`check_tensor`).
  """
  target = torch_names.flatten(variables)
  weight_map = maps.resolve(target, weights)
  canonical, origin = canonical_names(state_dict, source)
  canonical = weight_map.canonicalize(canonical, source)
  report = LoadReport()
  merged = dict(target)
  filled, mismatched = set(), set()
  for canonical_name in sorted(canonical):
    value = canonical[canonical_name]
    name = _file_name(canonical_name, origin)
    keys = weight_map.jreid_keys(canonical_name, target)
    if not keys:
      (report.ignored if weight_map.ignored(canonical_name, value) else report.unused).append(name)
      continue
    copied, resized_to, mismatch = False, None, None
    for key in keys:
      leaf = target[key]
      wanted = tuple(np.shape(leaf))
      torch_shape = tuple(weight_map.to_torch(key[1], np.empty(wanted)).shape)
      array = weight_map.from_torch(key[1], value)
      if array.shape != wanted and weight_map.resize is not None:
        try:
          adapted = weight_map.resize(key, array, wanted)
        except CheckpointMismatchError as err:
          raise CheckpointMismatchError(f"{source}: {name}: {err}") from None
        if adapted is not None and tuple(np.shape(adapted)) == wanted:
          # Only a change of the number of values is a resize; a reshape is a layout.
          resized_to = torch_shape if np.size(adapted) != array.size else None
          array = np.asarray(adapted)
      if array.shape != wanted and weight_map.must_fit(key):
        raise CheckpointMismatchError(
            f"{source}: {name} is {tuple(value.shape)} in the file, but this model's "
            f"{weight_map.torch_name(key)} is {torch_shape}: a checkpoint of another width, depth "
            "or architecture (e.g. a ViT-B file for a ViT-S config)")
      if array.shape != wanted:
        mismatched.add(key)
        mismatch = mismatch or (name, tuple(value.shape), torch_shape)
        continue
      check_tensor(source, name, value, key, leaf)
      merged[key] = array.astype(np.dtype(getattr(leaf, "dtype", np.float32)))
      filled.add(key)
      copied = True
    if not copied:
      report.mismatched.append(mismatch)
      continue
    if name not in report.loaded:
      report.loaded.append(name)
    if resized_to is not None:
      report.resized.append((name, tuple(np.shape(state_dict.get(name, value))), resized_to))
  report.missing = ["/".join((c,) + p) for c, p in target
                    if (c, p) not in filled and (c, p) not in mismatched]
  if not report.loaded:
    raise _nothing_fits(source, canonical, target, weight_map, report)
  return torch_names.unflatten(merged), report


def load_torch_weights(path: str | pathlib.Path, variables: Mapping, *,
                       weights: str | None = None) -> tuple[dict, LoadReport]:
  """`read_state_dict` + `merge_state_dict`: the weights of a file merged into `variables`."""
  return merge_state_dict(variables, read_state_dict(path), source=str(path), weights=weights)
