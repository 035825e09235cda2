"""Checkpoints of sound states only: the non-finite guard of the training loop.

A stopped run must leave a "last good" checkpoint that really is good, so
that a re-run with a corrected config continues from it (`SoundSaver`).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jreid.core import checkpoint, tree_paths
from jreid.errors import EvaluationError, NonFiniteLossError


def _non_finite_leaves(state) -> list[str]:
  """Names of the floating-point leaves of a (host) train state that hold NaN or inf."""
  bad = []
  for part in ("params", "batch_stats", "opt_state"):
    for name, leaf in tree_paths.named_leaves(getattr(state, part)):
      if jnp.issubdtype(np.asarray(leaf).dtype, jnp.inexact) and not np.isfinite(
          np.asarray(leaf, np.float32)).all():
        bad.append(f"{part}/{name}")
  return bad


def _few(names: list[str], limit: int = 3) -> str:
  return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


class SoundSaver:
  """Writes a checkpoint only once its state is known to be sound, so "last good" is good.

  The loss of step k+1 is computed from the state after step k: a non-finite
  loss there condemns that state even when all its values are finite (weights
  so large that the forward pass overflows, whatever the optimiser does next).
  So the state of a checkpoint step is copied to the host, checked finite, and
  written once the next step's loss is finite; the final state, which has no
  next loss, once its evaluation found its features finite. A stopped run thus
  leaves only checkpoints that a resume with a corrected config can continue from.
  """

  def __init__(self, ckpt: checkpoint.Checkpointer):
    self.ckpt = ckpt
    self.snapshot: tuple[int, Any, dict] | None = None  # (step, host state, data state)

  @property
  def waiting(self) -> bool:
    return self.snapshot is not None

  def offer(self, step: int, state, data_state: dict) -> None:
    host = jax.device_get(state)
    bad = _non_finite_leaves(host)
    if bad:
      self.snapshot = None
      self._stop(f"the state after step {step} holds non-finite values ({_few(bad)}), so it was "
                 "not saved")
    self.snapshot = (step, host, data_state)

  def confirm(self) -> None:
    """The waiting snapshot proved sound (the next loss, or the final evaluation): write it."""
    if self.snapshot is not None:
      self.ckpt.save(*self.snapshot)
      self.snapshot = None

  def refuse(self, step: int) -> None:
    cause = f"non-finite loss at step {step}"
    if self.snapshot is not None and self.snapshot[0] == step - 1:
      cause += f" (computed from the state after step {step - 1}, so that state was not saved)"
    self.snapshot = None
    self._stop(cause)

  def refuse_final(self, err: EvaluationError) -> None:
    """The final evaluation found non-finite features: the final state is not saved either."""
    step = self.snapshot[0] if self.snapshot is not None else None
    self.snapshot = None
    if step is None:  # a finished run re-evaluated: its checkpoint is already there
      raise err
    self._stop(f"{err}; so the final state (step {step}) was not saved", error=EvaluationError)

  def _stop(self, cause: str, error: type = NonFiniteLossError) -> None:
    self.ckpt.wait()
    latest = self.ckpt.latest_step()
    good = (f"last good checkpoint: {latest} in {self.ckpt.directory} (resume from it with a "
            "corrected config, e.g. a lower optim.lr)" if latest is not None
            else f"no checkpoint was saved in {self.ckpt.directory}")
    raise error(f"{cause}; training stopped, {good}") from None
