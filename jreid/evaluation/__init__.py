"""Evaluation: distances, ranking metrics (CMC, mAP, mINP), ROC, re-ranking, Jaccard distance, query expansion."""
from jreid.evaluation.distance import METRICS, compute_distance
from jreid.evaluation.metrics import evaluate_rank
from jreid.evaluation.query_expansion import alpha_query_expansion, query_expansion
from jreid.evaluation.rerank import jaccard_distance, re_ranking
from jreid.evaluation.roc import roc, tpr_at_fpr

__all__ = ["METRICS", "alpha_query_expansion", "compute_distance", "evaluate_rank", "jaccard_distance",
           "query_expansion", "re_ranking", "roc", "tpr_at_fpr"]
