"""Export a jreid checkpoint as a PyTorch state dict (`.pth`) or a `.safetensors` file.

The names and layouts are the model family's weight map's
(`jreid.convert.maps`): for ResNets torchvision names (with `backbone.` in the
"fastreid" layout) and FastReID head names; for ViTs the timm/DINO names
("timm", or TransReID-SSL's "transreid" with its head); for the CLIP tower
OpenAI's ("openai"). BN running statistics are included, with torch's `num_batches_tracked` counter
beside every BN (`with_bn_counters`), kernels are in torch's layouts. A
"fastreid" `.pth` holds the state dict under `"model"`, as FastReID's
checkpoints do: its `Checkpointer` (fvcore's) loads `checkpoint.pop("model")`
(`MODEL.WEIGHTS=... --eval-only`); `.safetensors` files and the other layouts
are the flat state dict. Only the model's `params` and `batch_stats` are written; optimiser
state stays behind. A run with an EMA teacher (DINO) exports its teacher, the
model it evaluates and releases (as `config.init_from` of such a run takes it).

The "dino" layout writes a DINO run whole, as main_dino.py saves its
`checkpoint.pth` (`dino_checkpoint`): `{"teacher": ..., "student": ...,
"dino_loss": {"center"}}`, nested dicts of tensors. Only `.pth` can hold that
nesting; a `.safetensors` name is refused rather than flattened into names no
DINO code reads (write the teacher's backbone with "timm" for that).
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
from jreid.convert.torch_names import PARAMS, STATS
from jreid.errors import CheckpointMismatchError, OutputPathError, WeightsFileError

TORCH_SUFFIXES = (".pth", ".pt")
# Layouts whose torch file nests the state dict under a key, as that project's checkpoints do.
NESTED_UNDER = {"fastreid": "model"}
BN_COUNTER = "num_batches_tracked"
DINO = "dino"  # a DINO run's checkpoint (teacher + student); one model's variables cannot fill it


@dataclasses.dataclass
class ExportResult:
  out: pathlib.Path
  source: str
  names: list[str]
  skipped: list[str]
  layout: str


@dataclasses.dataclass
class RunVariables:
  """The models a run's checkpoint holds, each `{"params", "batch_stats"}`.

  `model` is what the run trains (DINO: the student); `teacher` its EMA
  teacher where it has one (DINO), and `center` DINO's logit centre (out_dim,).
  """
  model: dict
  teacher: dict | None = None
  center: np.ndarray | None = None

  @property
  def released(self) -> dict:
    """What a one-model export writes: the teacher where there is one (what DINO evaluates and
    releases), else the model."""
    return self.model if self.teacher is None else self.teacher


def checkpoint_run(checkpoint: str | pathlib.Path, step: int | None = None) -> tuple[RunVariables, str]:
  """The models of a jreid run and where they came from.

  `checkpoint` is a workdir or its checkpoints/ folder (the latest step, or
  `step`), or one step folder; the step's digest is verified before reading.
  """
  from jreid.core.checkpoint import open_existing  # orbax is slow to import; only here
  checkpointer, step = open_existing(checkpoint, step)
  try:
    raw = checkpointer.restore_raw(step)
  finally:
    checkpointer.close()
  model = {c: raw.get(c) or {} for c in torch_names.COLLECTIONS}
  teacher = None
  if "teacher_params" in raw:  # DINO's state (jreid.methods.dino.DINOState)
    teacher = {PARAMS: raw["teacher_params"] or {}, STATS: raw.get("teacher_batch_stats") or {}}
  center = raw.get("center")
  return (RunVariables(model, teacher, None if center is None else np.asarray(center)),
          str(checkpointer.directory / str(step)))


def checkpoint_variables(checkpoint: str | pathlib.Path, step: int | None = None) -> tuple[dict, str]:
  """`{"params", "batch_stats"}` of the model a jreid run releases (`RunVariables.released`: a
  DINO run's teacher) and where they came from; `checkpoint` as `checkpoint_run`'s."""
  run, source = checkpoint_run(checkpoint, step)
  return run.released, source


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


def _torch_tensors(state: Mapping[str, np.ndarray], out: pathlib.Path) -> dict:
  try:
    import torch
  except ImportError:
    raise WeightsFileError(f"writing {out} needs PyTorch: pip install 'jreid[torch]' "
                           "(or write .safetensors, which does not)") from None
  # from_numpy shares memory and warns on the read-only arrays orbax restores; copy those.
  return {name: torch.from_numpy(np.require(value, requirements=["C", "W"]))
          for name, value in state.items()}


def write_state_dict(state: Mapping[str, np.ndarray], out: str | pathlib.Path, *,
                     nested_under: str | None = None) -> pathlib.Path:
  """Writes torch-layout numpy arrays by name; the format follows the suffix of `out`. A torch
  file holds them under the key `nested_under` where one is given (safetensors is always flat)."""
  out = pathlib.Path(out).expanduser()
  # np.require, not np.ascontiguousarray: that makes a scalar (a BN counter) an array of one.
  state = {name: np.require(value, requirements=["C"]) for name, value in state.items()}
  if out.suffix == ".safetensors":
    from safetensors.numpy import save_file
    _write(out, state, lambda s, path: save_file(s, path))
  elif out.suffix in TORCH_SUFFIXES:
    import torch  # _torch_tensors said how to install it
    tensors = _torch_tensors(state, out)
    content = tensors if nested_under is None else {nested_under: tensors}
    _write(out, content, lambda s, path: torch.save(s, path))
  else:
    raise WeightsFileError(f"cannot tell the format of {out}: use a name ending in "
                           f"{' or '.join(TORCH_SUFFIXES)} (PyTorch) or .safetensors")
  return out


def check_nested_format(out: str | pathlib.Path, layout: str) -> None:
  """A nested checkpoint (`layout` "dino") is a torch pickle: `.pth`/`.pt` only."""
  out = pathlib.Path(out)
  if out.suffix not in TORCH_SUFFIXES:
    flat = (" (or write the teacher's backbone alone as .safetensors with --layout timm)"
            if out.suffix == ".safetensors" else "")
    raise WeightsFileError(
        f"layout {layout!r} writes DINO's checkpoint.pth, a dict of state dicts ({{'teacher', "
        f"'student', 'dino_loss'}}), which only PyTorch's format holds: name the output "
        f"{out.with_suffix('.pth').name}{flat}")


def write_checkpoint(content: Mapping[str, Mapping[str, np.ndarray]], out: str | pathlib.Path) -> pathlib.Path:
  """Writes `{part: {name: array}}` as one torch file of nested state dicts (DINO's checkpoint)."""
  out = pathlib.Path(out).expanduser()
  check_nested_format(out, DINO)
  tensors = {part: _torch_tensors(state, out) for part, state in content.items()}
  import torch
  _write(out, tensors, lambda s, path: torch.save(s, path))
  return out


def with_bn_counters(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """`state` with `<bn>.num_batches_tracked` (int64 scalar 0) beside every `<bn>.running_mean`.

  torch's BatchNorm keeps that buffer, so with it the file holds exactly the
  keys of the torch model's `state_dict()`: a strict load of a state dict that
  carries version metadata (torch only fills the counter in for unversioned
  ones) and tools comparing key sets pass. jreid counts no batches; 0 is what
  a fresh torch BN holds, and the counter only matters with `momentum=None`.
  Readers skip it (each map's `ignored`).
  """
  state = dict(state)
  for name in list(state):
    if name.endswith(".running_mean"):
      state.setdefault(name[:-len("running_mean")] + BN_COUNTER, np.zeros((), np.int64))
  return state


def layouts() -> list[str]:
  """Every layout some weight map writes (the export tool's choices)."""
  return sorted({layout for weight_map in maps.WEIGHT_MAPS.values() for layout in weight_map.layouts})


def _fitting(weight_map: maps.WeightMap, run: RunVariables | None) -> list[str]:
  """The map's layouts that fit: "dino" only for a run with a teacher."""
  return [layout for layout in weight_map.layouts
          if layout != DINO or (run is not None and run.teacher is not None)]


def _check_layout(layout: str, weight_map: maps.WeightMap, source: str, run: RunVariables | None) -> None:
  fitting = _fitting(weight_map, run)
  if layout in fitting:
    return
  why = ("layout 'dino' writes a DINO run's teacher and student together, so it needs a "
         "run with a teacher (method 'dino'); this is one model" if layout == DINO and
         layout in weight_map.layouts else f"layout {layout!r} does not fit this model")
  raise CheckpointMismatchError(f"{source}: {why}; its layouts are {fitting}")


def export_variables(variables: Mapping, out: str | pathlib.Path, *, layout: str | None = None,
                     source: str = "variables") -> ExportResult:
  """Writes a model's variables to `out` in `layout` (default: its map's first); fails if none of
  them has a torch name."""
  weight_map = maps.resolve(torch_names.flatten(variables))
  layout = layout or weight_map.layouts[0]
  _check_layout(layout, weight_map, source, None)
  state, skipped = weight_map.to_state_dict(variables, layout)
  if not state:
    raise CheckpointMismatchError(f"{source}: no variable has a PyTorch name in the {layout!r} "
                                  f"layout; found {skipped[:3]}")
  state = with_bn_counters(state)
  written = write_state_dict(state, out, nested_under=NESTED_UNDER.get(layout))
  return ExportResult(written, source, sorted(state), skipped, layout)


def _dino_network(weight_map: maps.WeightMap, variables: Mapping, prefix: str, label: str,
                  source: str) -> tuple[dict, list[str]]:
  """One network's MultiCropWrapper state dict under `prefix`, and its variables left out, each
  `label` + its path (`teacher_` + `params/...`: the checkpoint's own names)."""
  state, skipped = weight_map.to_state_dict(variables, DINO)
  state = with_bn_counters(state)
  if not any(name.startswith("head.") for name in state):
    raise CheckpointMismatchError(
        f"{source}: layout 'dino' needs DINO's projection head (projector/mlp_*, "
        f"projector/last_layer: jreid.models.dino_head) in {label}params; it has none")
  return {prefix + name: value for name, value in state.items()}, [label + path for path in skipped]


def dino_checkpoint(run: RunVariables, source: str = "the run") -> tuple[dict, list[str]]:
  """A DINO run as main_dino.py's `checkpoint.pth` holds it, and the variables left out.

  `teacher` and `student` are its `MultiCropWrapper`s' state dicts
  (`backbone.<timm names>`, `head.mlp.*`, `head.last_layer.weight_{g,v}`).
  main_dino.py saves `student.state_dict()` of the DDP-wrapped student
  (`module.`), and `teacher.state_dict()` of a teacher it wraps in DDP only
  when the network has BatchNorm (SyncBN needs DDP; the ICS stem has BN):
  the teacher's names carry `module.` exactly then. Its
  `restart_from_checkpoint` loads them with `strict=False`, so another prefix
  would load nothing, silently. `dino_loss` holds DINOLoss's `center` buffer
  (1, out_dim). Skipped variables are named as in the checkpoint
  (`params/...` the student's, `teacher_params/...` the teacher's).
  """
  weight_map = maps.resolve(torch_names.flatten(run.released))
  _check_layout(DINO, weight_map, source, run)
  has_bn = any(collection == STATS for collection, _ in torch_names.flatten(run.teacher))
  teacher, teacher_skipped = _dino_network(weight_map, run.teacher, "module." if has_bn else "",
                                           "teacher_", source)
  student, student_skipped = _dino_network(weight_map, run.model, "module.", "", source)
  content = {"teacher": teacher, "student": student}
  if run.center is not None:
    content["dino_loss"] = {"center": np.asarray(run.center, np.float32).reshape(1, -1)}
  return content, student_skipped + teacher_skipped


def export_dino(run: RunVariables, out: str | pathlib.Path, *, source: str = "the run") -> ExportResult:
  """Writes `dino_checkpoint(run)` to `out` (.pth); `names` are `part/name` (`teacher/backbone.norm.weight`)."""
  check_nested_format(out, DINO)
  content, skipped = dino_checkpoint(run, source)
  names = sorted(f"{part}/{name}" for part, state in content.items() for name in state)
  return ExportResult(write_checkpoint(content, out), source, names, skipped, DINO)


def export_checkpoint(checkpoint: str | pathlib.Path, out: str | pathlib.Path, *,
                      layout: str | None = None, step: int | None = None) -> ExportResult:
  """`checkpoint_run`, then `export_dino` for layout "dino", else `export_variables` of the model the
  run releases (a DINO run's teacher); a bad `out` fails before the checkpoint is read."""
  paths.check_output_file(out, "the export file")
  if layout == DINO:
    check_nested_format(out, DINO)
  run, source = checkpoint_run(checkpoint, step)
  if layout == DINO:
    return export_dino(run, out, source=source)
  return export_variables(run.released, out, layout=layout, source=source)
