"""Knowledge-distillation losses of FastReID (He et al. 2020, section 6), student vs frozen teacher.

The teacher's inputs are wrapped in `stop_gradient`: only the student learns.
The paper trains with `logit_l1` + `pkt` (its eq. 8-10); the released
`Distiller` uses `symmetric_kl` at temperature 16 instead of the L1.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

PKT_EPS = 1e-7  # Passalis & Tefas' reference code (and FastReID's copy of it)


def logit_l1(student_logits: jax.Array, teacher_logits: jax.Array) -> jax.Array:
  """The paper's eq. 8, ||l_s - l_t||_1, as the mean absolute difference over batch AND classes.

  FastReID released no code for it; the mean over both axes (PyTorch's
  `F.l1_loss` default) keeps it independent of the number of identities:
  it is the per-image L1 norm of eq. 8 divided by the number of classes.
  """
  teacher_logits = jax.lax.stop_gradient(teacher_logits)
  return jnp.mean(jnp.abs(student_logits - teacher_logits))


def _kl_times_t2(log_p: jax.Array, log_q: jax.Array, temperature: float) -> jax.Array:
  """sum_ik q log(q / p) / B * T^2: PyTorch's `kl_div(log p, q, reduction='sum') * T**2 / B`."""
  return jnp.sum(jnp.exp(log_q) * (log_q - log_p)) * temperature ** 2 / log_p.shape[0]


def symmetric_kl(student_logits: jax.Array, teacher_logits: jax.Array,
                 temperature: float = 16.0) -> jax.Array:
  """FastReID's released `Distiller.jsdiv_loss`: (KL(p_t||p_s) + KL(p_s||p_t)) / 2 at temperature T.

  p = softmax(logits / T) over classes; each KL is summed over classes,
  averaged over the batch and multiplied by T^2 (Hinton's gradient-scale
  correction), as `Distiller._kldiv` does. Despite the name it is the
  symmetrised KL (Jeffreys / 2), not the Jensen-Shannon divergence through
  the mixture. The student is differentiated in both terms (its distribution
  is the target of the second), the teacher in neither.
  """
  teacher_logits = jax.lax.stop_gradient(teacher_logits)
  log_s = jax.nn.log_softmax(student_logits / temperature, axis=-1)
  log_t = jax.nn.log_softmax(teacher_logits / temperature, axis=-1)
  return (_kl_times_t2(log_s, log_t, temperature) + _kl_times_t2(log_t, log_s, temperature)) / 2


def _pkt_probabilities(features: jax.Array) -> jax.Array:
  """Rows of (cos + 1) / 2 between batch items, each row normalised to sum to 1."""
  norm = jnp.sqrt(jnp.sum(features ** 2, axis=1, keepdims=True))
  unit = features / (norm + PKT_EPS)
  similarity = (unit @ unit.T + 1.0) / 2.0
  return similarity / jnp.sum(similarity, axis=1, keepdims=True)


def pkt(student_features: jax.Array, teacher_features: jax.Array) -> jax.Array:
  """Probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018), the paper's eq. 9, as coded.

  Features are L2-normalised (norm + 1e-7), the B x B cosine similarities
  mapped to (s + 1) / 2 and each row divided by its sum, giving conditional
  probabilities p_t (teacher) and p_s (student). The loss is
  mean_ij p_t log((p_t + 1e-7) / (p_s + 1e-7)) over all B^2 entries, as in
  PKT's reference code and FastReID's `KDTrainer.pkt_loss`: unlike eq. 9 the
  diagonal i = j stays in, and the sum over pairs is a mean.
  """
  teacher = _pkt_probabilities(jax.lax.stop_gradient(teacher_features).astype(jnp.float32))
  student = _pkt_probabilities(student_features.astype(jnp.float32))
  return jnp.mean(teacher * jnp.log((teacher + PKT_EPS) / (student + PKT_EPS)))
