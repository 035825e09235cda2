"""A PyTorch ResNet(-IBN-a) and BoT model written from the papers, independent of jreid's Flax code.

Used as the reference side of `tests/convert/test_torch.py` (weights exported
from jreid must give the same features here) and of `benchmarks/train_step.py`
(the same ResNet-50 BoT train step in PyTorch eager). torchvision does not
work with the pinned torch, so the network is written out: torchvision
layout (stride on the 3x3 of a Bottleneck, 1x1 conv + BN shortcut), IBN-a
with an affine InstanceNorm on the first half of the channels and BN on the
rest, last stride 1, and a FastReID-style head (`heads.bottleneck.0` BN,
`heads.weight` bias-free classifier).
"""
import torch
from torch import nn

STAGES = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet50": ("bottleneck", (3, 4, 6, 3))}


class IBNa(nn.Module):
  def __init__(self, planes):
    super().__init__()
    self.half = planes // 2
    self.IN = nn.InstanceNorm2d(self.half, affine=True)
    self.BN = nn.BatchNorm2d(planes - self.half)

  def forward(self, x):
    return torch.cat([self.IN(x[:, :self.half].contiguous()), self.BN(x[:, self.half:].contiguous())], 1)


class Block(nn.Module):
  """BasicBlock (two 3x3) or Bottleneck (1x1, strided 3x3, 1x1 x4) by `kind`."""

  def __init__(self, kind, inplanes, planes, stride, ibn):
    super().__init__()
    self.kind = kind
    out = planes * (4 if kind == "bottleneck" else 1)
    if kind == "bottleneck":
      self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
      self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(planes)
      self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
      self.bn3 = nn.BatchNorm2d(out)
    else:
      self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
      self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(planes)
    self.bn1 = IBNa(planes) if ibn else nn.BatchNorm2d(planes)
    self.downsample = None
    if stride != 1 or inplanes != out:
      self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    if self.kind == "bottleneck":
      y = torch.relu(self.bn2(self.conv2(y)))
      y = self.bn3(self.conv3(y))
    else:
      y = self.bn2(self.conv2(y))
    return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class TorchResNet(nn.Module):
  """ResNet-18/50 with last stride 1; `width` scales every stage (64 is the published network)."""

  def __init__(self, name, width=64, ibn=False, ceil_mode_pool=True):
    super().__init__()
    kind, stages = STAGES[name]
    self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    # FastReID's stem pool (no padding, ceil mode) or torchvision's (padding 1).
    self.maxpool = (nn.MaxPool2d(3, 2, ceil_mode=True) if ceil_mode_pool else nn.MaxPool2d(3, 2, 1))
    inplanes = width
    for i, blocks in enumerate(stages):
      planes = width * 2 ** i
      layer = []
      for j in range(blocks):
        stride = (1, 2, 2, 1)[i] if j == 0 else 1
        layer.append(Block(kind, inplanes, planes, stride, ibn and i < 3))
        inplanes = planes * (4 if kind == "bottleneck" else 1)
      setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
    self.out_features = inplanes

  def forward(self, x):
    x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
    return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class Heads(nn.Module):
  """BNNeck (no bias learning in BoT is left to the caller) and a bias-free classifier."""

  def __init__(self, features, num_classes):
    super().__init__()
    self.bottleneck = nn.Sequential(nn.BatchNorm1d(features))
    self.weight = nn.Parameter(torch.zeros(num_classes, features))


class Baseline(nn.Module):
  """FastReID's model shape: `backbone` + `heads`; returns (neck, pre_neck, logits)."""

  def __init__(self, name, width=64, ibn=False, ceil_mode_pool=True, num_classes=5):
    super().__init__()
    self.backbone = TorchResNet(name, width, ibn, ceil_mode_pool)
    self.heads = Heads(self.backbone.out_features, num_classes)

  def forward(self, x):
    pooled = self.backbone(x).mean((2, 3))
    neck = self.heads.bottleneck(pooled)
    return neck, pooled, neck @ self.heads.weight.t()


def bot_loss(pooled, logits, labels, smoothing=0.1, margin=0.3):
  """BoT's objective: label-smoothed CE on the logits + batch-hard triplet (margin) on pooled features."""
  ce = nn.functional.cross_entropy(logits, labels, label_smoothing=smoothing)
  distances = torch.cdist(pooled, pooled).clamp_min(1e-12)
  same = labels[:, None] == labels[None, :]
  hardest_positive = distances.masked_fill(~same, 0).amax(1)
  hardest_negative = distances.masked_fill(same, float("inf")).amin(1)
  return ce + torch.relu(hardest_positive - hardest_negative + margin).mean()
