"""Writes a jreid checkpoint as PyTorch weights (torchvision/FastReID names).

    python -m jreid.tools.export --checkpoint WORKDIR --out model.pth
    python -m jreid.tools.export --checkpoint WORKDIR/checkpoints --out model.safetensors \\
        --layout torchvision --step 1000

The layout follows the model (the first is the default):
* ResNets: "fastreid" writes `backbone.*` and `heads.*` as a FastReID `Baseline`
  holds them; "torchvision" writes the bare backbone (load it into a
  torchvision ResNet with `strict=False`, which then keeps its own `fc`).
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
import sys

from jreid.convert import export
from jreid.errors import ReIDError
from jreid.tools import int_at_least


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m jreid.tools.export", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", required=True, help="a jreid workdir or its checkpoints/ folder")
  parser.add_argument("--out", required=True, help="output file: .pth / .pt (PyTorch) or .safetensors")
  parser.add_argument("--layout", default=None, choices=export.layouts(),
                      help="names to write (default: the model's first layout, see above)")
  parser.add_argument("--step", type=int_at_least(0), default=None,
                      help="checkpoint step (default: the latest)")
  args = parser.parse_args(argv)
  try:
    result = export.export_checkpoint(args.checkpoint, args.out, layout=args.layout, step=args.step)
  except ReIDError as err:
    print(f"jreid.tools.export: error: {err}", file=sys.stderr, flush=True)
    return 1
  print(f"wrote {len(result.names)} tensors from {result.source} to {result.out} ({result.layout} layout)")
  if result.skipped:
    more = f" (+{len(result.skipped) - 5} more)" if len(result.skipped) > 5 else ""
    print(f"not exported (no PyTorch name): {', '.join(result.skipped[:5])}{more}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
