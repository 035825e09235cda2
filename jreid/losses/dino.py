"""DINO self-distillation (Caron et al. 2021, `main_dino.py`): the loss, its centre, the momentum.

Multi-crop layout: the student sees every crop, the global ones first, and
the teacher only the global ones, in the same order, so student crop i and
teacher crop i are views of the same image through the same augmentation.
`DINOLoss` compares every teacher crop with every student crop of a
different view: with 2 global and n crops that is 2n - 2 terms, averaged with
equal weight (its `n_loss_terms`).

The centre is updated from the raw (uncentred) teacher logits after the loss
used the previous one; DINO all-reduces the batch sum over devices. Under
jit over a globally sharded batch `jnp.mean` is already the global mean; a
per-device (`shard_map`/`pmap`) step passes `axis_name` to take the mean
across devices too.

The teacher is an EMA of the student's parameters only (`jreid.core.ema.update`;
DINO zips `parameters()`, not buffers: the teacher's BatchNorm statistics are
its own, from its train-mode forwards), momentum cosine from 0.996 to 1. The
per-parameter gradient clip is the optimiser's (`optim.clip_per_parameter`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def dino_loss(student_logits: jax.Array, teacher_logits: jax.Array, center: jax.Array, *,
              student_temp: float = 0.1, teacher_temp: float | jax.Array = 0.04,
              n_global: int = 2, axis_name: str | None = None) -> tuple[jax.Array, jax.Array]:
  """(DINO's cross-entropy over pairs of different views, the batch centre of the teacher logits).

  student_logits (n_crops, B, K) with the `n_global` global crops first;
  teacher_logits (n_global, B, K); center (K,). Teacher probabilities
  softmax((t - center) / teacher_temp) are constants (stop-gradient), student
  log-probabilities log_softmax(s / student_temp). The loss is the mean over
  the pairs (teacher crop i, student crop j), j != i, of the batch mean of
  -sum_k p_t log p_s. The batch centre is the mean of the teacher logits over
  crops and batch (K,), over devices too with `axis_name`; feed it to
  `update_center`. `teacher_temp` may be a traced schedule value. Computed
  in float32.
  """
  n_crops = student_logits.shape[0]
  if teacher_logits.shape[0] != n_global or n_crops < n_global or \
      student_logits.shape[1:] != teacher_logits.shape[1:]:
    raise ValueError(f"dino_loss: student logits {student_logits.shape} (n_crops, B, K) and teacher "
                     f"logits {teacher_logits.shape} ({n_global} global crops, B, K) do not match")
  teacher_logits = jax.lax.stop_gradient(teacher_logits.astype(jnp.float32))
  log_p_s = jax.nn.log_softmax(student_logits.astype(jnp.float32) / student_temp, axis=-1)
  p_t = jax.nn.softmax((teacher_logits - center) / teacher_temp, axis=-1)
  # sum over the student crops j != i of log p_s(j) is the sum over all crops less crop i.
  others = jnp.sum(log_p_s, axis=0)[None] - log_p_s[:n_global]
  batch = student_logits.shape[1]
  loss = -jnp.sum(p_t * others) / (batch * n_global * (n_crops - 1))
  batch_center = jnp.mean(teacher_logits, axis=(0, 1))
  if axis_name is not None:
    batch_center = jax.lax.pmean(batch_center, axis_name)
  return loss, batch_center


def update_center(center: jax.Array, batch_center: jax.Array, momentum: float = 0.9) -> jax.Array:
  """DINO's centre EMA: center * m + batch_center * (1 - m)."""
  return center * momentum + batch_center * (1.0 - momentum)


def teacher_momentum(step, total_steps: int, base: float = 0.996, final: float = 1.0):
  """DINO's cosine momentum schedule: `base` at step 0, `final` at `total_steps`.

  final - (final - base) (cos(pi step / total) + 1) / 2, the step clipped to
  [0, total] (DINO indexes a precomputed array by the global iteration,
  reaching `final` only past its last step; the same values as
  `jreid.train.optim.cosine_ramp(base, final, total)`).
  """
  progress = jnp.clip(step / max(total_steps, 1), 0.0, 1.0)
  return final - (final - base) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0
