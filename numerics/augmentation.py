"""Database-side augmentation (DBA): each whitened vector averaged with its nearest.

For every image i, with x the L2-normalised whitened vectors and kNN(i) its k nearest
others in the whitened space (ordered by distance, then id, as every list):

    v_i = normalise(x_i + Σ_{j in kNN(i)} w_ij x_j),   w_ij = max(x_i · x_j, 0)^α

the α-weighted DBA of Radenović, Tolias & Chum (TPAMI 2018; Arandjelović & Zisserman,
CVPR 2012, for the plain mean). A neighbour no closer than orthogonal adds nothing.
Each v_i is computed on its own in a fixed order (float64 sums, one row at a time), so
it has the same bits whatever batch it is computed in: incremental runs recompute only
the vectors that change and get what a full run gets.

An incremental run needs the images whose k nearest may have changed since the
neighbours were last computed (`stale`): the changed and new images, those whose
k nearest held a changed or removed image, and those a changed or new image now enters.
"""
from __future__ import annotations

import numba
import numpy as np

from numerics.engine import ExactIndex, exact_squared_distances


@numba.njit(cache=True, parallel=True)
def _augment(vectors, rows, neighbour_rows, alpha, out):  # pragma: no cover - compiled
    dimensions = vectors.shape[1]
    for r in numba.prange(len(rows)):
        i = rows[r]
        total = np.empty(dimensions)
        for c in range(dimensions):
            total[c] = vectors[i, c]
        for m in range(neighbour_rows.shape[1]):
            j = neighbour_rows[r, m]
            if j < 0:
                continue
            similarity = 0.0
            for c in range(dimensions):
                similarity += np.float64(vectors[i, c]) * np.float64(vectors[j, c])
            if similarity <= 0.0:
                continue
            weight = similarity ** alpha
            for c in range(dimensions):
                total[c] += weight * vectors[j, c]
        norm = 0.0
        for c in range(dimensions):
            norm += total[c] * total[c]
        norm = np.sqrt(norm)
        for c in range(dimensions):
            out[r, c] = total[c] / norm if norm > 0.0 else 0.0


def augment(vectors: np.ndarray, neighbour_rows: np.ndarray, alpha: float,
            rows: np.ndarray | None = None) -> np.ndarray:
    """Return the float32 augmented vectors of `rows` (default all) of `vectors`.

    neighbour_rows[r] holds the rows of row r's k nearest, padded with −1."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rows = np.arange(len(vectors)) if rows is None else np.asarray(rows, dtype=np.int64)
    neighbour_rows = np.ascontiguousarray(neighbour_rows, dtype=np.int64).reshape(
        len(rows), -1)
    if alpha < 0:
        raise ValueError(f"alpha must not be negative, got {alpha}")
    out = np.empty((len(rows), vectors.shape[1]), dtype=np.float32)
    if len(rows):
        _augment(vectors, rows, neighbour_rows, float(alpha), out)
    return out


def nearest(index: ExactIndex, ids: np.ndarray, k: int, memory_bytes: int) -> np.ndarray:
    """Return the ids (padded with −1) of the k nearest others of `ids` in the index."""
    rows = np.searchsorted(index.ids, ids)
    found, _ = index.search(index.vectors[rows], ids, k, memory_bytes)
    return found


def all_nearest(index: ExactIndex, k: int, memory_bytes: int) -> np.ndarray:
    """Return the ids of every indexed image's k nearest others, in index order."""
    out = np.full((len(index), k), -1, dtype=np.int64)
    for start, stop, found, _ in index.search_all(k, memory_bytes):
        out[start:stop] = found
    return out


def stale(index: ExactIndex, stored_ids: np.ndarray, stored: np.ndarray,
          changed_ids: np.ndarray, memory_bytes: int) -> np.ndarray:
    """Return the indexed ids (ascending) whose k nearest may differ from `stored`.

    index: the whitened vectors now (ids ascending); stored_ids (ascending) and stored
    (their k nearest ids, padded with −1): the neighbours as last computed, exact for
    the vectors then; changed_ids: the images whose vector changed or that left since.
    An image missing from `stored`, or stored but no longer indexed, counts as changed.
    """
    ids, k = index.ids, stored.shape[1]
    changed = np.union1d(np.asarray(changed_ids, dtype=np.int64),
                         np.setxor1d(ids, stored_ids))
    moved = np.intersect1d(changed, ids)  # vectors new or changed
    # Those whose k nearest held an image that changed or left.
    held = stored_ids[np.isin(stored, changed).any(axis=1)]
    result = np.union1d(moved, np.intersect1d(held, ids))
    # The others keep their k nearest unless a moved vector now comes before the k-th:
    # the engine returns every pair within a bound per base row (the k-th distance, or
    # any distance where fewer than k others were there).
    rest = np.setdiff1d(ids, result)
    if not len(moved) or not len(rest):
        return result
    at = np.searchsorted(stored_ids, rest)
    last = stored[at, k - 1]
    short = last < 0
    rest_rows = np.searchsorted(ids, rest)
    last_rows = np.searchsorted(ids, np.where(short, ids[0], last))
    last_distance = np.sqrt(exact_squared_distances(index.vectors[rest_rows],
                                                    index.vectors[last_rows]))
    bounds = np.full(len(index), -np.inf)
    bounds[rest_rows] = np.where(short, np.inf, last_distance * last_distance)
    moved_rows = np.searchsorted(ids, moved)
    _, _, (base_rows, query_rows, distances) = index.search(
        index.vectors[moved_rows], moved, 1, memory_bytes, column_bounds=bounds)
    owner = np.searchsorted(rest_rows, base_rows)
    entrant = moved[query_rows]
    enters = (short[owner] | (distances < last_distance[owner])
              | ((distances == last_distance[owner]) & (entrant < last[owner])))
    return np.union1d(result, ids[base_rows[enters]])
