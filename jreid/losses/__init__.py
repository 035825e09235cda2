"""Losses are pure jnp functions returning a scalar mean over the batch.

`LOSSES` names them for configs, grouped by what they take:
  - on logits (B, K) and labels: "cross_entropy" (label-smoothed, FastReID's
    eps / (K - 1) form), "focal" (multi-class focal loss);
  - on embeddings (B, D) and labels: "triplet" (batch-hard, optional soft
    margin), "pairwise_circle" (circle loss over in-batch pairs);
  - logit functions, not losses: "arcface_logits", "cosface_logits",
    "circle_logits" take (cosines (B, K), labels) and return margin logits
    to feed to "cross_entropy".
"""
from jreid.losses.circle import pairwise_circle
from jreid.losses.focal import focal_loss
from jreid.losses.margin import arcface_logits, circle_logits, cosface_logits
from jreid.losses.softmax import cross_entropy
from jreid.losses.triplet import batch_hard_triplet

LOSSES = {
    "cross_entropy": cross_entropy,
    "focal": focal_loss,
    "triplet": batch_hard_triplet,
    "pairwise_circle": pairwise_circle,
    "arcface_logits": arcface_logits,
    "cosface_logits": cosface_logits,
    "circle_logits": circle_logits,
}
