"""Backbones by name: `BACKBONES[name](width=..., last_stride=..., ibn=...)` builds a module.

Each entry is a flax module class with its architecture fixed by
`functools.partial`; the call contract is `(x, *, train) -> (map, intermediates)`.
"""
from __future__ import annotations

import functools

from jreid.models.backbones.resnet import BasicBlock, Bottleneck, ResNet

BACKBONES = {
    "resnet18": functools.partial(ResNet, block=BasicBlock, stage_sizes=(2, 2, 2, 2)),
    "resnet34": functools.partial(ResNet, block=BasicBlock, stage_sizes=(3, 4, 6, 3)),
    "resnet50": functools.partial(ResNet, block=Bottleneck, stage_sizes=(3, 4, 6, 3)),
    "resnet101": functools.partial(ResNet, block=Bottleneck, stage_sizes=(3, 4, 23, 3)),
}
