"""Writes a jreid checkpoint as PyTorch weights (torchvision/FastReID names) or an ONNX model.

    python -m jreid.tools.export --checkpoint WORKDIR --out model.pth
    python -m jreid.tools.export --checkpoint WORKDIR/checkpoints --out model.safetensors \\
        --layout torchvision --step 1000
    python -m jreid.tools.export --checkpoint WORKDIR --out model.onnx  # --format onnx

`--format onnx` (implied by a .onnx name) writes the run's test-feature
function (`jreid.convert.onnx_export`): input `images` (batch, 3, height,
width) float32 NCHW, resized to the run's data.height x data.width and
normalised with its data.mean/std (of pixels / 255); output `features`. It
needs the workdir's config.json and `pip install 'jreid[onnx]'`.

The layout follows the model (the first is the default):
* ResNets: "fastreid" writes `backbone.*` and `heads.*` as a FastReID `Baseline`
  holds them, in a .pth under the key "model" as FastReID's checkpoints (its
  Checkpointer, `MODEL.WEIGHTS=...`, reads that key); "torchvision" writes the
  bare backbone (load it into a torchvision ResNet with `strict=False`, which
  then keeps its own `fc`; its stem pool must be `MaxPool2d(3, 2, ceil_mode=True)`
  for jreid's features). Every BN carries `num_batches_tracked`.
* ViTs: "timm" writes the bare backbone under timm/DINO names (the ICS stem as
  TransReID-SSL names it), which their `VisionTransformer` loads with
  `strict=True`; "transreid" adds the head as TransReID-SSL's ReID model
  (`base.*`, `bottleneck.*`, `classifier.weight`).
* the CLIP tower: "openai" writes OpenAI's `visual.*` names.

A DINO run (method "dino", configs/transreid_ssl.py) exports its teacher, the
model DINO evaluates and releases: "timm" gives the teacher's backbone (what
fine-tuning starts from). "dino" writes the whole run as main_dino.py saves its
checkpoint.pth: its restart_from_checkpoint loads the networks and the centre
from it (no optimiser state or epoch is written: those start afresh), and
TransReID-SSL's convert_model_dino.py takes the teacher's backbone from it:

    python -m jreid.tools.export --checkpoint runs/dino --out checkpoint.pth --layout dino

`{"teacher": ..., "student": ..., "dino_loss": {"center": (1, out_dim)}}`, each
network as DINO's MultiCropWrapper: `backbone.<timm names>`, `head.mlp.{0,2,4}.*`,
`head.last_layer.weight_g` (ones, the fixed norm) and `.weight_v`. The student
carries DDP's `module.`, and so does the teacher when the network has BatchNorm
(the ICS stem): main_dino.py then wraps the teacher in DDP for SyncBN. Only .pth
holds this nesting: a .safetensors name is refused.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

from jreid.core import paths
from jreid.convert import export, onnx_export
from jreid.errors import CheckpointMismatchError, ReIDError, WeightsFileError
from jreid.tools import int_at_least

FORMATS = ("weights", "onnx")


def export_onnx(checkpoint: str | pathlib.Path, out: str | pathlib.Path, *,
                step: int | None = None) -> export.ExportResult:
  """The test-feature function of a run (its workdir, checkpoints/ or a step folder; the workdir
  holds config.json) written to `out` (.onnx); a bad `out` fails before anything is read."""
  paths.check_output_file(out, "the export file")
  if pathlib.Path(out).suffix != onnx_export.SUFFIX:
    raise WeightsFileError(f"an ONNX model is written to a {onnx_export.SUFFIX} file, not "
                           f"{pathlib.Path(out).name}")
  onnx_export.import_jax2onnx()  # says how to install it before the checkpoint is read
  run, source = export.checkpoint_run(checkpoint, step)
  from jreid.api import saved_config  # upgraded and checked as jreid.load reads it
  config = saved_config(pathlib.Path(source).parent.parent)
  features, metadata = onnx_export.run_features(config, run.released)
  try:
    model = onnx_export.to_onnx(features, config.data.height, config.data.width, metadata=metadata)
  except (NotImplementedError, TypeError, ValueError) as err:  # an operation jax2onnx lacks
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    raise CheckpointMismatchError(f"{source}: {config.model.backbone.name} ({config.model.meta}) "
                                  f"cannot be converted to ONNX: {first}") from None
  names = [f"{onnx_export.INPUT} -> {onnx_export.OUTPUT}"]
  return export.ExportResult(onnx_export.write_onnx(model, out), source, names, [], "onnx")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m jreid.tools.export", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", required=True, help="a jreid workdir or its checkpoints/ folder")
  parser.add_argument("--out", required=True,
                      help="output file: .pth / .pt (PyTorch), .safetensors, or .onnx")
  parser.add_argument("--format", default=None, choices=FORMATS,
                      help="weights (a state dict) or onnx (the feature function); "
                           "default: onnx for a .onnx name, else weights")
  parser.add_argument("--layout", default=None, choices=export.layouts(),
                      help="names to write (default: the model's first layout, see above)")
  parser.add_argument("--step", type=int_at_least(0), default=None,
                      help="checkpoint step (default: the latest)")
  args = parser.parse_args(argv)
  onnx = (args.format or ("onnx" if args.out.endswith(onnx_export.SUFFIX) else "weights")) == "onnx"
  if onnx and args.layout is not None:
    parser.error("--layout names a state dict's tensors; an ONNX model has none (drop it)")
  try:
    if onnx:
      result = export_onnx(args.checkpoint, args.out, step=args.step)
    else:
      result = export.export_checkpoint(args.checkpoint, args.out, layout=args.layout, step=args.step)
  except ReIDError as err:
    print(f"jreid.tools.export: error: {err}", file=sys.stderr, flush=True)
    return 1
  if onnx:
    print(f"wrote the ONNX feature function of {result.source} to {result.out} "
          f"(input {onnx_export.INPUT!r} NCHW, output {onnx_export.OUTPUT!r})")
    return 0
  print(f"wrote {len(result.names)} tensors from {result.source} to {result.out} ({result.layout} layout)")
  if result.skipped:
    more = f" (+{len(result.skipped) - 5} more)" if len(result.skipped) > 5 else ""
    print(f"not exported (no PyTorch name): {', '.join(result.skipped[:5])}{more}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
