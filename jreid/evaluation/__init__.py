"""Evaluation: distances, ranking metrics (CMC, mAP, mINP), ROC, re-ranking, query expansion."""
from jreid.evaluation.distance import METRICS, compute_distance
from jreid.evaluation.metrics import evaluate_rank
from jreid.evaluation.rerank import re_ranking
from jreid.evaluation.roc import roc, tpr_at_fpr

__all__ = ["METRICS", "compute_distance", "evaluate_rank", "re_ranking", "roc", "tpr_at_fpr"]
