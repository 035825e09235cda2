"""Losses are pure jnp functions returning a scalar mean over the batch.

`LOSSES` names them for configs: "cross_entropy" takes (logits, labels, ...),
"triplet" takes (embeddings, labels, ...).
"""
from jreid.losses.softmax import cross_entropy
from jreid.losses.triplet import batch_hard_triplet

LOSSES = {
    "cross_entropy": cross_entropy,
    "triplet": batch_hard_triplet,
}
