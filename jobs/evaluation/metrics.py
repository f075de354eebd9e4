"""Retrieval measures of ranked lists against known relevant images.

For one query with R relevant images and a ranked list (nearest first), rel(i) = 1 when
the i-th entry is relevant:
- precision@n = Σ_{i≤n} rel(i) / n
- recall@n = Σ_{i≤n} rel(i) / R
- AP@k = Σ_{i≤k} precision@i · rel(i) / min(R, k), so that a list holding every relevant
  image it has room for first scores 1; mAP@k is its mean over the queries.
Entries beyond the end of a short list count as not relevant. Queries with R = 0 are not
scored (the caller counts them).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

CUTOFFS = {"precision": (1, 10), "recall": (1, 5, 10)}


def score(ranked: Sequence[bool], relevant: int, k: int = 100) -> dict[str, float]:
    """Return one query's measures; ranked[i] says whether the i-th entry is relevant."""
    if relevant < 1:
        raise ValueError("a query needs at least one relevant image")
    hits = np.zeros(max(k, *CUTOFFS["precision"], *CUTOFFS["recall"]))
    top = np.asarray(ranked[:k], dtype=float)
    hits[:len(top)] = top
    found = np.cumsum(hits)
    positions = np.arange(1, len(hits) + 1)
    scores = {f"mAP@{k}": float((found[:k] / positions[:k] * hits[:k]).sum()
                                / min(relevant, k))}
    scores.update({f"recall@{n}": float(found[n - 1] / relevant)
                   for n in CUTOFFS["recall"]})
    scores.update({f"precision@{n}": float(found[n - 1] / n)
                   for n in CUTOFFS["precision"]})
    return scores


def mean_scores(per_query: list[dict[str, float]]) -> dict[str, float]:
    """Return the mean of each measure over the queries (an empty dict for none)."""
    if not per_query:
        return {}
    return {name: float(np.mean([scores[name] for scores in per_query]))
            for name in per_query[0]}
