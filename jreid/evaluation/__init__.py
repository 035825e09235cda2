"""Evaluation: distance matrices and the ReID ranking metrics (CMC, mAP, mINP)."""
from jreid.evaluation.distance import METRICS, compute_distance
from jreid.evaluation.metrics import evaluate_rank

__all__ = ["METRICS", "compute_distance", "evaluate_rank"]
