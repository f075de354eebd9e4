"""The one brute force the tests check neighbour lists against: numpy only, no project code.

Every pair's squared distance Σ(q − b)² in float64; each query's list is the k nearest
base vectors ordered by distance, then by id, leaving out the base vector with the
query's own id.
"""
from __future__ import annotations

import numpy as np

# Query rows per block: bounds the (rows, n, d) difference array to about 32 MB.
_BLOCK_VALUES = 4_000_000


def squared_distances(query: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Return the (len(query), len(base)) float64 Σ(q − b)², each pair's sum over the
    dimensions in numpy's order (exact where the data make every term exact)."""
    query = np.atleast_2d(np.asarray(query, dtype=np.float64))
    base = np.atleast_2d(np.asarray(base, dtype=np.float64))
    out = np.empty((len(query), len(base)))
    rows = max(1, _BLOCK_VALUES // max(1, base.size))
    for start in range(0, len(query), rows):
        block = query[start:start + rows]
        out[start:start + rows] = ((block[:, None, :] - base[None, :, :]) ** 2).sum(axis=2)
    return out


def nearest(query, base, base_ids, k: int, query_ids=None, squared=None):
    """Return, per query row, (ids, distances) of its k nearest base vectors: float64
    Euclidean distances, ordered by distance then id, without the base vector whose id
    is the query's own (query_ids; None: none left out). `squared` replaces the squared
    distances where a test needs another computation of them."""
    base_ids = np.asarray(base_ids)
    if squared is None:
        squared = squared_distances(query, base)
    distances = np.sqrt(np.asarray(squared, dtype=np.float64))
    result = []
    for row, row_distances in enumerate(distances):
        order = np.lexsort((base_ids, row_distances))
        if query_ids is not None:
            order = order[base_ids[order] != query_ids[row]]
        order = order[:k]
        result.append((base_ids[order], row_distances[order]))
    return result


def all_lists(ids, vectors, k: int, squared=None) -> dict[int, tuple[list[int], list[float]]]:
    """Return {id: (neighbour ids, distances)} of every vector against all the others;
    images without any other image get no list."""
    ids = np.asarray(ids)
    lists = {}
    for image_id, (found, distances) in zip(
            ids.tolist(), nearest(vectors, vectors, ids, k, ids, squared)):
        if len(found):
            lists[image_id] = (found.tolist(), distances.tolist())
    return lists
