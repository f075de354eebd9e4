"""Exact k nearest neighbours by Euclidean distance, in blocked float32 matrix products.

Candidates come from float32 products, t = ‖b‖² − 2a·b (‖a‖² is the same for the whole
row, so it is left out). Each t is within a proven bound e of the exact value, so every
entry that can belong to the true top k lies within 2e of the k-th smallest t; all of
those are kept (not a fixed number) and re-ranked with exact float64 distances. The
result therefore equals a float64 brute force: same neighbours, same order, ties broken
by neighbour id.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_UNIT = 2.0 ** -24  # float32 unit roundoff
# The float64 re-ranking errs by at most about d·2⁻⁵³ relative; this slack (relative to
# (‖a‖ + ‖b‖)², far above that) keeps float32 candidate selection from ever cutting a
# pair that float64 would rank inside the top k.
_FLOAT64_SLACK = 1e-11
# Absolute slack for subnormal products, where relative bounds do not hold.
_TINY = 1e-30
# Bytes per element of a distance block: the float32 block and its boolean mask.
_BYTES_PER_ELEMENT = 5
_RERANK_PAIRS = 256  # pairs per re-ranking chunk: 256 × d float64 stays in cache


def error_coefficient(dimensions: int) -> float:
    """Return c such that |t − (‖b‖² − 2a·b)| ≤ c·(‖a‖ + ‖b‖)² for float32 t."""
    # Any float32 inner product of length d errs by at most γ_d·Σ|a_i b_i| ≤ γ_d‖a‖‖b‖
    # (Higham, Accuracy and Stability, 3.1), whatever the summation order or FMA use.
    # Rounding ‖b‖² to float32 and the subtraction add at most 2u(‖a‖ + ‖b‖)².
    gamma = dimensions * _UNIT / (1 - dimensions * _UNIT)
    return (gamma + 3 * _UNIT) * 1.01 + _FLOAT64_SLACK


def _squared_norms(vectors: np.ndarray, chunk: int = 4096) -> np.ndarray:
    out = np.empty(len(vectors), dtype=np.float64)
    for start in range(0, len(vectors), chunk):
        part = vectors[start:start + chunk].astype(np.float64)
        out[start:start + chunk] = np.einsum("ij,ij->i", part, part)
    return out


def _as_matrix(vectors, name: str) -> np.ndarray:
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return array


def _as_ids(ids, count: int, name: str) -> np.ndarray:
    array = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(array) != count:
        raise ValueError(f"{name}: expected {count} ids, got {len(array)}")
    return array


def exact_squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return Σ(a_i − b_i)² row by row in float64, the same for a pair whatever the call."""
    # Differences of float32 values in float64 and a contiguous per-row sum: a pair's
    # result never depends on which other pairs share the call (no BLAS blocking).
    diff = a.astype(np.float64)
    diff -= b
    np.square(diff, out=diff)
    return diff.sum(axis=1)


class ExactIndex:
    """Base vectors prepared for exact k-nearest-neighbour searches."""

    def __init__(self, vectors, ids, threads: int | None = None):
        self.vectors = _as_matrix(vectors, "base vectors")
        self.ids = _as_ids(ids, len(self.vectors), "base ids")
        if len(np.unique(self.ids)) != len(self.ids):
            raise ValueError("base ids must be unique")
        self.dimensions = self.vectors.shape[1]
        squared = _squared_norms(self.vectors)
        self.max_norm = float(np.sqrt(squared.max())) if len(squared) else 0.0
        # Stay far from float32 overflow so that no product or sum becomes infinite.
        if self.max_norm > 1e18:
            raise ValueError(f"vector norm {self.max_norm:.3g} is too large")
        self.squared_norms32 = squared.astype(np.float32)
        self._order = np.argsort(self.ids, kind="stable")
        self._sorted_ids = self.ids[self._order]
        self.threads = threads or os.cpu_count() or 1

    def __len__(self) -> int:
        return len(self.ids)

    def _positions(self, query_ids: np.ndarray) -> np.ndarray:
        """Return each query id's row in the base, or −1 where it is not there."""
        if not len(self.ids):
            return np.full(len(query_ids), -1, dtype=np.int64)
        at = np.searchsorted(self._sorted_ids, query_ids)
        at = np.minimum(at, len(self._sorted_ids) - 1)
        found = self._sorted_ids[at] == query_ids
        return np.where(found, self._order[at], -1)

    def block_shape(self, query_rows: int, memory_bytes: int) -> tuple[int, int]:
        """Return (rows, columns) of the distance blocks that fit in memory_bytes."""
        elements = max(1, memory_bytes // _BYTES_PER_ELEMENT)
        # Beyond 2048 × 16384 (128 MiB) larger blocks do not make the products faster,
        # and the first block's candidates, before the threshold tightens, grow with it.
        rows = max(1, min(query_rows, 2048, elements // max(1, min(len(self), 4096))))
        columns = max(1, min(len(self), 16384, elements // rows))
        return rows, columns

    def search(self, query, query_ids, k: int, memory_bytes: int = 256 << 20,
               block_rows: int | None = None, block_columns: int | None = None):
        """Return (ids, distances) of each query row's k nearest base rows, self excluded.

        ids is an (n, k) int64 array padded with −1 and distances an (n, k) float64 array
        of Euclidean distances padded with inf, where fewer than k base rows are left.
        Rows are ordered by distance, then by neighbour id.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        query = _as_matrix(query, "query vectors")
        query_ids = _as_ids(query_ids, len(query), "query ids")
        if len(query) and query.shape[1] != self.dimensions:
            raise ValueError(f"query vectors have {query.shape[1]} dimensions, "
                             f"the base {self.dimensions}")
        ids = np.full((len(query), k), -1, dtype=np.int64)
        distances = np.full((len(query), k), np.inf)
        if not len(query) or not len(self):
            return ids, distances
        rows, columns = self.block_shape(len(query), memory_bytes)
        rows, columns = block_rows or rows, block_columns or columns
        positions = self._positions(query_ids)
        with ThreadPoolExecutor(self.threads) as pool:
            for start in range(0, len(query), rows):
                stop = min(start + rows, len(query))
                block_ids, block_distances = self._search_block(
                    query[start:stop], positions[start:stop], k, columns, pool)
                ids[start:stop], distances[start:stop] = block_ids, block_distances
        return ids, distances

    def _search_block(self, query, positions, k, columns, pool):
        n = len(query)
        query_norms = np.sqrt(_squared_norms(query))
        # Twice the error bound of any t in these rows, in float64.
        slack = 2 * (error_coefficient(self.dimensions)
                     * (query_norms + self.max_norm) ** 2 + _TINY)
        minus_two_query = query * np.float32(-2)  # exact: a power of two
        threshold = np.full(n, np.inf)
        kept_rows, kept_columns, kept_t = [], [], []
        kept = 0
        for start in range(0, len(self), columns):
            stop = min(start + columns, len(self))
            t = minus_two_query @ self.vectors[start:stop].T
            t += self.squared_norms32[start:stop]
            own = np.flatnonzero((positions >= start) & (positions < stop))
            # NaN, not inf: it fails every comparison, even with an infinite threshold.
            t[own, positions[own] - start] = np.nan
            unset = np.flatnonzero(~np.isfinite(threshold))
            if len(unset) and stop - start > k:
                # The k-th value of any k+1 or more columns bounds the k-th of all of
                # them; a sample of the block gives a threshold at a fraction of the cost
                # of selecting over the whole block (_prune tightens it afterwards). About
                # k/4096 of the other columns pass it.
                sample = t[unset, :min(stop - start, max(4096, 8 * k))]
                kth = np.partition(sample, k - 1, axis=1)[:, k - 1]
                threshold[unset] = kth + slack[unset]
            block_rows, block_columns = np.nonzero(t <= _round_up32(threshold)[:, None])
            kept_rows.append(block_rows.astype(np.int32))
            kept_columns.append(block_columns.astype(np.int64) + start)
            kept_t.append(t[block_rows, block_columns])
            kept += len(block_rows)
            if kept > 4 * n * (k + 16):
                kept_rows, kept_columns, kept_t, threshold = _prune(
                    kept_rows, kept_columns, kept_t, n, k, slack)
                kept = len(kept_rows[0])
        rows_, columns_, _, _ = _prune(kept_rows, kept_columns, kept_t, n, k, slack)
        rows_, columns_ = rows_[0], columns_[0]
        squared = np.empty(len(rows_))
        chunks = range(0, len(rows_), _RERANK_PAIRS)

        def rerank(at):
            part = slice(at, at + _RERANK_PAIRS)
            squared[part] = exact_squared_distances(self.vectors[columns_[part]],
                                                    query[rows_[part]])
        list(pool.map(rerank, chunks))
        distance = np.sqrt(squared)
        neighbour = self.ids[columns_]
        order = np.lexsort((neighbour, distance, rows_))
        rows_, distance, neighbour = rows_[order], distance[order], neighbour[order]
        counts = np.bincount(rows_, minlength=n)
        rank = np.arange(len(rows_)) - np.repeat(np.cumsum(counts) - counts, counts)
        take = rank < k
        ids = np.full((n, k), -1, dtype=np.int64)
        distances = np.full((n, k), np.inf)
        ids[rows_[take], rank[take]] = neighbour[take]
        distances[rows_[take], rank[take]] = distance[take]
        return ids, distances


def _round_up32(values: np.ndarray) -> np.ndarray:
    """Return float32 values not below the float64 ones, so no candidate is cut."""
    rounded = values.astype(np.float32)
    low = rounded.astype(np.float64) < values
    rounded[low] = np.nextafter(rounded[low], np.float32(np.inf))
    return rounded


def _prune(rows, columns, t, n, k, slack):
    """Keep the entries within slack of each row's k-th smallest t; return new threshold."""
    rows, columns, t = np.concatenate(rows), np.concatenate(columns), np.concatenate(t)
    counts = np.bincount(rows, minlength=n)
    threshold = np.full(n, np.inf)
    full = counts >= k
    if full.any():
        # Each block's entries arrive sorted by row, so a stable sort by row is cheap;
        # the k-th per row then comes from one partition of a padded (n, widest) array.
        order = np.argsort(rows, kind="stable")
        starts = np.cumsum(counts) - counts
        rank = np.empty(len(rows), dtype=np.int64)
        rank[order] = np.arange(len(rows)) - starts[rows[order]]
        padded = np.full((n, counts.max()), np.inf, dtype=np.float32)
        padded[rows, rank] = t
        kth = np.partition(padded, k - 1, axis=1)[:, k - 1]
        threshold[full] = kth[full].astype(np.float64) + slack[full]
    keep = t.astype(np.float64) <= threshold[rows]
    return [rows[keep]], [columns[keep]], [t[keep]], threshold
