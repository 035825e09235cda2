"""Durations in epochs or steps, resolved from the real number of training images.

Every duration has a step form and an epoch form; a config sets at most one
of each pair (`train.steps` / `train.epochs`, `optim.warmup_steps` /
`optim.warmup_epochs`, `optim.milestones` / `optim.milestone_epochs`,
`optim.cosine_delay_steps` / `optim.cosine_delay_epochs`,
`optim.freeze_steps` / `optim.freeze_epochs`). An epoch is one pass over the
training images at `train.batch_size`: `e` epochs are
`ceil(e * images / batch_size)` steps (at least 1), and epoch `k` starts at
step `ceil(k * images / batch_size)`, so fractional epochs and epoch
boundaries agree. (FastReID drops the last partial batch of every epoch:
on Market-1501 at 64 its 120 epochs are 24240 iterations, these 24255.)
`train.epoch_steps` > 0 fixes an epoch's length in steps instead, as
cluster contrast's 200 iterations between two clusterings: an epoch is then
`epoch_steps * batch_size` images, whatever the training set holds.
"""
from __future__ import annotations

import copy
import dataclasses
import math

from jreid.errors import ConfigError

# (section, step key, epoch key)
PAIRS = (("train", "steps", "epochs"),
         ("optim", "warmup_steps", "warmup_epochs"),
         ("optim", "cosine_delay_steps", "cosine_delay_epochs"),
         ("optim", "freeze_steps", "freeze_epochs"),
         ("optim", "milestones", "milestone_epochs"))


@dataclasses.dataclass(frozen=True)
class Epochs:
  images: int
  batch_size: int
  total_steps: int = 0

  def steps(self, epochs: float) -> int:
    return max(1, math.ceil(epochs * self.images / self.batch_size))

  def start(self, epoch: int) -> int:
    """The number of steps done before epoch `epoch` (0-based) begins."""
    return math.ceil(epoch * self.images / self.batch_size)

  @property
  def count(self) -> int:
    """Epochs the run touches (the last one may be cut short by `total_steps`)."""
    epoch = 0
    while self.start(epoch + 1) < self.total_steps:
      epoch += 1
    return epoch + 1

  def of_step(self, done: int) -> int:
    """The epoch whose next step is step `done + 1` (`count` once the run is finished)."""
    if done >= self.total_steps:
      return self.count
    epoch = int(done * self.batch_size // self.images)
    while self.start(epoch + 1) <= done:
      epoch += 1
    while self.start(epoch) > done:
      epoch -= 1
    return epoch

  def span(self, epoch: int) -> tuple[int, int]:
    """(steps done before the epoch, steps done after it), within the run."""
    return min(self.start(epoch), self.total_steps), min(self.start(epoch + 1), self.total_steps)


def _given(value) -> bool:
  return bool(tuple(value)) if isinstance(value, (tuple, list)) else value > 0


def resolve(config, images: int):
  """(a copy of `config` with every duration in steps, the run's `Epochs`)."""
  if images < 1:
    raise ConfigError(f"data.train={config.data.train!r} has no training images")
  out = copy.deepcopy(config)
  batch = int(config.train.batch_size)
  epoch_steps = int(config.train.get("epoch_steps", 0))
  epochs = Epochs(images=epoch_steps * batch if epoch_steps else images, batch_size=batch)
  for section, step_key, epoch_key in PAIRS:
    block = out[section]
    if epoch_key not in block:
      continue
    step_value, epoch_value = block[step_key], block[epoch_key]
    if _given(step_value) and _given(epoch_value):
      raise ConfigError(f"{section}.{step_key}={step_value!r} and {section}.{epoch_key}="
                        f"{epoch_value!r} are both set; give the duration one way")
    if _given(epoch_value):
      block[step_key] = (tuple(epochs.steps(e) for e in epoch_value)
                         if isinstance(epoch_value, (tuple, list)) else epochs.steps(epoch_value))
      block[epoch_key] = type(epoch_value)() if isinstance(epoch_value, (tuple, list)) else 0.0
  total = int(out.train.steps)
  if total < 1:
    raise ConfigError("the run has no length: set train.steps or train.epochs")
  return out, dataclasses.replace(epochs, total_steps=total)
