"""Backbones by name: `BACKBONES[name](width=..., last_stride=..., ibn=...)` builds a module.

Each entry is a flax module class with its architecture fixed by
`functools.partial`; the call contract is `(x, *, train) -> (map, intermediates)`.
Further keyword options of the ResNet family: `non_local` (FastReID's
positions, fixed per entry by `non_local_stages`) and `ceil_mode_pool`.
"""
from __future__ import annotations

import functools

from jreid.models.backbones.resnest import ResNeSt
from jreid.models.backbones.resnet import BasicBlock, Bottleneck, ResNet

_resnet = functools.partial(ResNet, block=Bottleneck)
# FastReID's nl_layers_per_stage: non-local blocks after the last n blocks of each stage.
_NL_50 = (0, 2, 3, 0)
_NL_101 = (0, 2, 9, 0)

BACKBONES = {
    "resnet18": functools.partial(ResNet, block=BasicBlock, stage_sizes=(2, 2, 2, 2)),
    "resnet34": functools.partial(ResNet, block=BasicBlock, stage_sizes=(3, 4, 6, 3)),
    "resnet50": functools.partial(_resnet, stage_sizes=(3, 4, 6, 3), non_local_stages=_NL_50),
    "resnet101": functools.partial(_resnet, stage_sizes=(3, 4, 23, 3), non_local_stages=_NL_101),
    "resnet152": functools.partial(_resnet, stage_sizes=(3, 8, 36, 3)),
    "resnext50": functools.partial(_resnet, stage_sizes=(3, 4, 6, 3), non_local_stages=_NL_50,
                                   groups=32, width_per_group=4),
    "resnext101": functools.partial(_resnet, stage_sizes=(3, 4, 23, 3), non_local_stages=_NL_101,
                                    groups=32, width_per_group=4),
    "resnest50": functools.partial(ResNeSt, stage_sizes=(3, 4, 6, 3), non_local_stages=_NL_50),
}
