"""Export a jreid checkpoint as a PyTorch state dict (`.pth`) or a `.safetensors` file.

The names and layouts are the model family's weight map's
(`jreid.convert.maps`): for ResNets torchvision names (with `backbone.` in the
"fastreid" layout) and FastReID head names; for ViTs the timm/DINO names
("timm", or TransReID-SSL's "transreid" with its head); for the CLIP tower
OpenAI's ("openai"). BN running statistics are included, kernels are in torch's
layouts. Only the model's `params` and `batch_stats` are written; optimiser
state stays behind.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import secrets
import shutil
from collections.abc import Mapping

import numpy as np

from jreid.core import paths
from jreid.convert import maps, torch_names
from jreid.errors import CheckpointMismatchError, OutputPathError, WeightsFileError

TORCH_SUFFIXES = (".pth", ".pt")


@dataclasses.dataclass
class ExportResult:
  out: pathlib.Path
  source: str
  names: list[str]
  skipped: list[str]
  layout: str


def checkpoint_variables(checkpoint: str | pathlib.Path, step: int | None = None) -> tuple[dict, str]:
  """`{"params", "batch_stats"}` of a jreid run and where they came from.

  `checkpoint` is a workdir or its checkpoints/ folder (the latest step, or
  `step`), or one step folder; the step's digest is verified before reading.
  """
  from jreid.core.checkpoint import open_existing  # orbax is slow to import; only here
  checkpointer, step = open_existing(checkpoint, step)
  try:
    raw = checkpointer.restore_raw(step)
  finally:
    checkpointer.close()
  variables = {c: raw.get(c) or {} for c in torch_names.COLLECTIONS}
  return variables, str(checkpointer.directory / str(step))


_FULL_BYTES = 1 << 20  # less free space than this after a failed write: the disk is full


def _write(out: pathlib.Path, state: Mapping[str, np.ndarray], write_to) -> None:
  """Write through a temporary file in the target folder, then rename (never a half file)."""
  paths.check_output_file(out, "the export file")
  with paths.writing(out, "the export file", "an earlier file of that name is intact"):
    out.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name rather than mkstemp: the writers create the file themselves, so
    # it gets the user's umask instead of mkstemp's owner-only 0600.
    temporary = out.parent / f".{out.name}.{secrets.token_hex(6)}.tmp"
    try:
      write_to(state, str(temporary))
      os.replace(temporary, out)
    except BaseException as err:
      temporary.unlink(missing_ok=True)
      if isinstance(err, OSError) or not isinstance(err, Exception):
        raise
      # torch and safetensors report a failed write as their own errors (torch's is a bare
      # "unexpected pos"); the free space of the folder tells a full disk apart.
      full = "os error 28" in str(err) or shutil.disk_usage(out.parent).free < _FULL_BYTES
      reason = "no space left on the device" if full else f"{type(err).__name__}: {err}"
      raise OutputPathError(f"cannot write the export file {out}: {reason}; an earlier file of "
                            "that name is intact") from None


def write_state_dict(state: Mapping[str, np.ndarray], out: str | pathlib.Path) -> pathlib.Path:
  """Writes torch-layout numpy arrays by name; the format follows the suffix of `out`."""
  out = pathlib.Path(out).expanduser()
  state = {name: np.ascontiguousarray(value) for name, value in state.items()}
  if out.suffix == ".safetensors":
    from safetensors.numpy import save_file
    _write(out, state, lambda s, path: save_file(s, path))
  elif out.suffix in TORCH_SUFFIXES:
    try:
      import torch
    except ImportError:
      raise WeightsFileError(f"writing {out} needs PyTorch: pip install 'jreid[torch]' "
                             "(or write .safetensors, which does not)") from None
    # from_numpy shares memory and warns on the read-only arrays orbax restores; copy those.
    tensors = {name: torch.from_numpy(np.require(value, requirements=["C", "W"]))
               for name, value in state.items()}
    _write(out, tensors, lambda s, path: torch.save(s, path))
  else:
    raise WeightsFileError(f"cannot tell the format of {out}: use a name ending in "
                           f"{' or '.join(TORCH_SUFFIXES)} (PyTorch) or .safetensors")
  return out


def layouts() -> list[str]:
  """Every layout some weight map writes (the export tool's choices)."""
  return sorted({layout for weight_map in maps.WEIGHT_MAPS.values() for layout in weight_map.layouts})


def export_variables(variables: Mapping, out: str | pathlib.Path, *, layout: str | None = None,
                     source: str = "variables") -> ExportResult:
  """Writes a model's variables to `out` in `layout` (default: its map's first); fails if none of
  them has a torch name."""
  weight_map = maps.resolve(torch_names.flatten(variables))
  layout = layout or weight_map.layouts[0]
  if layout not in weight_map.layouts:
    raise CheckpointMismatchError(f"{source}: layout {layout!r} does not fit this model; its "
                                  f"layouts are {list(weight_map.layouts)}")
  state, skipped = weight_map.to_state_dict(variables, layout)
  if not state:
    raise CheckpointMismatchError(f"{source}: no variable has a PyTorch name in the {layout!r} "
                                  f"layout; found {skipped[:3]}")
  return ExportResult(write_state_dict(state, out), source, sorted(state), skipped, layout)


def export_checkpoint(checkpoint: str | pathlib.Path, out: str | pathlib.Path, *,
                      layout: str | None = None, step: int | None = None) -> ExportResult:
  """`checkpoint_variables` + `export_variables`; a bad `out` fails before the checkpoint is read."""
  paths.check_output_file(out, "the export file")
  variables, source = checkpoint_variables(checkpoint, step)
  return export_variables(variables, out, layout=layout, source=source)
