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
               block_rows: int | None = None, block_columns: int | None = None,
               bounds=None):
        """Return (ids, distances) of each query row's k nearest base rows, self excluded.

        ids is an (n, k) int64 array padded with −1 and distances an (n, k) float64 array
        of Euclidean distances padded with inf, where fewer than k base rows are left.
        Rows are ordered by distance, then by neighbour id. bounds, if given, holds a
        squared distance per query row: base rows farther than it may be left out (all
        rows within it are kept), which spares their float64 re-ranking.
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
        bounds = (np.full(len(query), np.inf) if bounds is None
                  else np.asarray(bounds, dtype=np.float64).reshape(len(query)))
        with ThreadPoolExecutor(self.threads) as pool:
            for start in range(0, len(query), rows):
                stop = min(start + rows, len(query))
                block_ids, block_distances = self._search_block(
                    query[start:stop], positions[start:stop], k, columns, pool,
                    bounds[start:stop])
                ids[start:stop], distances[start:stop] = block_ids, block_distances
        return ids, distances

    def _search_block(self, query, positions, k, columns, pool, bounds):
        candidates = _Candidates(query, k, self, bounds)
        minus_two_query = query * np.float32(-2)  # exact: a power of two
        for start in range(0, len(self), columns):
            stop = min(start + columns, len(self))
            t = minus_two_query @ self.vectors[start:stop].T
            t += self.squared_norms32[start:stop]
            own = np.flatnonzero((positions >= start) & (positions < stop))
            # NaN, not inf: it fails every comparison, even with an infinite threshold.
            t[own, positions[own] - start] = np.nan
            candidates.add(t, start)
        return self._rank(query, *candidates.finish(), k, pool)

    def search_all(self, k: int, memory_bytes: int = 256 << 20,
                   block_rows: int | None = None):
        """Yield (start, stop, ids, distances) of every base row's k nearest, in row order.

        The same lists as search(base, ids, k), in about half the products: the
        distance block of rows I and columns J also serves rows J and columns I.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        n = len(self)
        # Two square float32 blocks (one transposed) and their masks.
        # block_rows (--batch-size) may ask for fewer rows, never for more memory.
        rows = max(1, min(block_rows or 2048, int(np.sqrt(memory_bytes / 10))))
        starts = range(0, n, rows)
        waiting: dict[int, _Candidates] = {}
        with ThreadPoolExecutor(self.threads) as pool:
            for i_start in starts:
                i_stop = min(i_start + rows, n)
                query = self.vectors[i_start:i_stop]
                mine = waiting.pop(i_start, None) or _Candidates(query, k, self)
                minus_two_query = query * np.float32(-2)
                for j_start in range(i_start, n, rows):
                    j_stop = min(j_start + rows, n)
                    t = minus_two_query @ self.vectors[j_start:j_stop].T
                    if j_start != i_start:
                        # Rows J against columns I: the transpose, with I's norms.
                        theirs = t.T + self.squared_norms32[i_start:i_stop]
                        other = waiting.get(j_start)
                        if other is None:
                            other = waiting[j_start] = _Candidates(
                                self.vectors[j_start:j_stop], k, self)
                        other.add(theirs, i_start)
                        del theirs
                    t += self.squared_norms32[j_start:j_stop]
                    if j_start == i_start:
                        np.fill_diagonal(t, np.nan)  # self excluded
                    mine.add(t, j_start)
                ids, distances = self._rank(query, *mine.finish(), k, pool)
                yield i_start, i_stop, ids, distances

    def _rank(self, query, rows, columns, k, pool):
        """Return the k best of the candidates by exact float64 distance, then id."""
        n = len(query)
        squared = np.empty(len(rows))

        def rerank(at):
            part = slice(at, at + _RERANK_PAIRS)
            squared[part] = exact_squared_distances(self.vectors[columns[part]],
                                                    query[rows[part]])
        list(pool.map(rerank, range(0, len(rows), _RERANK_PAIRS)))
        distance = np.sqrt(squared)
        neighbour = self.ids[columns]
        order = np.lexsort((neighbour, distance, rows))
        rows, distance, neighbour = rows[order], distance[order], neighbour[order]
        counts = np.bincount(rows, minlength=n)
        rank = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        take = rank < k
        ids = np.full((n, k), -1, dtype=np.int64)
        distances = np.full((n, k), np.inf)
        ids[rows[take], rank[take]] = neighbour[take]
        distances[rows[take], rank[take]] = distance[take]
        return ids, distances


class _Candidates:
    """A block of query rows' candidates: every entry within slack of the row's k-th t."""

    def __init__(self, query: np.ndarray, k: int, index: ExactIndex, bounds=None):
        self.n, self.k = len(query), k
        squared_norms = _squared_norms(query)
        # Twice the error bound of any t in these rows, in float64.
        self.slack = 2 * (error_coefficient(index.dimensions)
                          * (np.sqrt(squared_norms) + index.max_norm) ** 2 + _TINY)
        # A squared distance bound b in terms of t is b − ‖a‖²; t errs by at most half
        # the slack, so no entry whose exact distance is within the bound is cut (the
        # float64 roundings of b and ‖a‖² are far below the slack).
        self.bound = np.full(self.n, np.inf)
        if bounds is not None:
            self.bound = bounds - squared_norms + self.slack
        self.threshold = self.bound.copy()
        self.rows, self.columns, self.t = [], [], []
        self.kept = 0

    def add(self, t: np.ndarray, column_offset: int) -> None:
        """Take the entries of t (rows × columns, NaN for none) that may be in a top k."""
        k = self.k
        unset = np.flatnonzero(~np.isfinite(self.threshold))
        if len(unset) and t.shape[1] > k:
            # The k-th value of any k+1 or more columns bounds the k-th of all of them;
            # a sample of the block gives a threshold at a fraction of the cost of
            # selecting over the whole block (_prune tightens it afterwards). About
            # k/4096 of the other columns pass it.
            sample = t[unset, :min(t.shape[1], max(4096, 8 * k))]
            kth = np.partition(sample, k - 1, axis=1)[:, k - 1]
            self.threshold[unset] = kth + self.slack[unset]
        rows, columns = np.nonzero(t <= _round_up32(self.threshold)[:, None])
        self.rows.append(rows.astype(np.int32))
        self.columns.append(columns.astype(np.int64) + column_offset)
        self.t.append(t[rows, columns])
        self.kept += len(rows)
        if self.kept > 2 * self.n * (k + 16):
            self._prune()

    def _prune(self) -> None:
        self.rows, self.columns, self.t, threshold = _prune(
            self.rows, self.columns, self.t, self.n, self.k, self.slack)
        self.threshold = np.minimum(threshold, self.bound)
        self.kept = len(self.rows[0])

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (rows, columns) of the final candidates."""
        self._prune()
        return self.rows[0], self.columns[0]


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
