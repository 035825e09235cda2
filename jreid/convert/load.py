"""Load PyTorch weights (torchvision, FastReID, LUPerson MoCo) into a jreid ReID model.

    variables, report = load_torch_weights("resnet50_ibn_a.pth", variables)
    print(report.summary())

Files are read without executing pickled code: `.safetensors` through
safetensors (no torch needed), everything else through
`torch.load(weights_only=True)`, which refuses any object other than tensors
and plain containers. Checkpoints that nest the weights (`{"state_dict": ...}`
of MoCo / `.pth.tar`, `{"model": ...}` of FastReID) are unwrapped, and the
wrapper prefixes of DataParallel (`module.`), FastReID (`backbone.`), MoCo
(`encoder_q.`) and some ReID repos (`base.`) are stripped, so one loader reads
all of them.

Only names *and* shapes that fit the target are copied; everything else stays
as initialised and is listed in the report, because the usual case is
partial: an ImageNet backbone without a head, or a FastReID model whose
classifier was trained on another number of identities.
"""
from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping

import numpy as np

from jreid.convert import torch_names
from jreid.errors import CheckpointMismatchError, WeightsFileError

STRIPPED_PREFIXES = ("module.", "encoder_q.", "backbone.", "base.")
# MGN's branches (`jreid.models.mgn`) each hold a copy of the ResNet's later blocks.
MGN_BRANCHES = ("b1", "b2", "b3")
NESTING_KEYS = ("state_dict", "model")


@dataclasses.dataclass
class LoadReport:
  """What a load did. Names are the file's (as written there) except `missing` (jreid paths).

  `mismatched` holds (file name, shape in the file, shape the model needs), both
  in torch layout. `ignored` holds names skipped on purpose: BN's
  `num_batches_tracked`, an ImageNet `fc`, a zero neck bias the model has no
  parameter for.
  """
  loaded: list[str] = dataclasses.field(default_factory=list)
  missing: list[str] = dataclasses.field(default_factory=list)
  unused: list[str] = dataclasses.field(default_factory=list)
  mismatched: list[tuple[str, tuple, tuple]] = dataclasses.field(default_factory=list)
  ignored: list[str] = dataclasses.field(default_factory=list)

  def summary(self, limit: int = 5) -> str:
    def few(items):
      more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
      return ", ".join(map(str, items[:limit])) + more
    lines = [f"loaded {len(self.loaded)} arrays"]
    for label, items in (("missing from the file", self.missing),
                         ("not used by the model", self.unused),
                         ("shape mismatch", [f"{n} {a} vs model {b}" for n, a, b in self.mismatched])):
      if items:
        lines.append(f"{len(items)} {label}: {few(items)}")
    return "; ".join(lines)


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
  torch = _import_torch(path)
  try:
    content = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as err:  # UnpicklingError, RuntimeError (not a zip), EOFError, ...
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
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


def _ignored(canonical: str) -> bool:
  return canonical.endswith("num_batches_tracked") or canonical.startswith("fc.")


def merge_state_dict(variables: Mapping, state_dict: Mapping[str, np.ndarray], *,
                     source: str = "the state dict") -> tuple[dict, LoadReport]:
  """Copies the tensors of `state_dict` that fit `variables` (a full ReID model's variables).

  Returns new `{"params", "batch_stats"}` trees (plain dicts; unloaded leaves are
  the target's own) and the report. Raises CheckpointMismatchError if nothing
  fits, which means the file is for another architecture (or another width).
  """
  target = torch_names.flatten(variables)
  torch_names.check_mappable(target)
  report = LoadReport()
  merged = dict(target)
  seen: dict[str, str] = {}
  for name in sorted(state_dict):
    value = np.asarray(state_dict[name])
    canonical = strip_prefixes(name)
    if canonical in seen:
      raise CheckpointMismatchError(f"{source}: {name} and {seen[canonical]} both map to "
                                    f"{canonical}; remove one of them")
    seen[canonical] = name
    key = torch_names.jreid_key(canonical)
    if _ignored(canonical):
      report.ignored.append(name)
    elif key is None or key not in target:
      if canonical == torch_names.NECK_BIAS and not np.any(value):
        report.ignored.append(name)  # FastReID's frozen zero bias; jreid's neck has none
      else:
        report.unused.append(name)
    else:
      leaf = target[key]
      wanted = tuple(np.shape(leaf))
      array = torch_names.from_torch_layout(key[1], value)
      if array.shape != wanted:
        report.mismatched.append(
            (name, tuple(value.shape), torch_names.to_torch_layout(key[1], np.empty(wanted)).shape))
      else:
        merged[key] = array.astype(np.dtype(getattr(leaf, "dtype", np.float32)))
        report.loaded.append(name)
  branch_keys = _fill_mgn_branches(target, merged, state_dict, report)
  loaded_keys = {torch_names.jreid_key(strip_prefixes(n)) for n in report.loaded} | branch_keys
  mismatched_keys = {torch_names.jreid_key(strip_prefixes(n)) for n, _, _ in report.mismatched}
  report.missing = ["/".join((c,) + p) for c, p in target
                    if (c, p) not in loaded_keys and (c, p) not in mismatched_keys]
  if not report.loaded:
    hint = (f"; shapes differ, e.g. {report.mismatched[0]}" if report.mismatched
            else f"; the file has e.g. {report.unused[:3]}")
    raise CheckpointMismatchError(f"{source}: none of its {len(state_dict)} tensors fits this model "
                                  f"(a different architecture or width?){hint}")
  return torch_names.unflatten(merged), report


def _fill_mgn_branches(target: Mapping, merged: dict, state_dict: Mapping,
                       report: LoadReport) -> set:
  """Copies a plain ResNet's layer3_{j>=1} / layer4 tensors into each MGN branch `b{n}/...`.

  The branches keep the full ResNet's block names (and shapes: b2/b3's
  stride-1 layer4_0 has the same weights), so an ImageNet or person
  pre-trained file fills all three, as FastReID's MGN deep-copies its
  backbone's res_conv4 / res_g_conv5. Returns the keys filled; a file name
  used here moves from `unused` to `loaded`.
  """
  by_canonical = {strip_prefixes(name): name for name in state_dict}
  filled = set()
  for key, leaf in target.items():
    collection, path = key
    if path[0] not in MGN_BRANCHES:
      continue
    name = by_canonical.get(torch_names.torch_name((collection, ("backbone",) + path[1:])))
    if name is None:
      continue
    array = torch_names.from_torch_layout(path, np.asarray(state_dict[name]))
    if array.shape != tuple(np.shape(leaf)):
      continue
    merged[key] = array.astype(np.dtype(getattr(leaf, "dtype", np.float32)))
    filled.add(key)
    if name in report.unused:
      report.unused.remove(name)
      report.loaded.append(name)
  return filled


def load_torch_weights(path: str | pathlib.Path, variables: Mapping) -> tuple[dict, LoadReport]:
  """`read_state_dict` + `merge_state_dict`: the weights of a file merged into `variables`."""
  return merge_state_dict(variables, read_state_dict(path), source=str(path))
