"""Exact k nearest neighbours by Euclidean distance, in blocked float32 matrix products.

Candidates come from float32 products: v = (−2a·b + ‖b‖²) + ‖a‖², an estimate of the
squared distance, the same for (a, b) and (b, a). Each v is within a proven bound e of
the exact value, so every entry that can belong to the true top k lies within 2e of the
k-th smallest v; all of those are kept (not a fixed number) and re-ranked with exact
float64 distances. The result therefore equals a float64 brute force: same neighbours,
same order, ties broken by neighbour id.
"""
from __future__ import annotations

import contextlib
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from numerics import kernels

_UNIT = 2.0 ** -24  # float32 unit roundoff
# The float64 re-ranking errs by at most about d·2⁻⁵³ relative; this slack (relative to
# (‖a‖ + ‖b‖)², far above that) keeps float32 candidate selection from ever cutting a
# pair that float64 would rank inside the top k.
_FLOAT64_SLACK = 1e-11
# Absolute slack for subnormal products, where relative bounds do not hold.
_TINY = 1e-30
# Bytes per element of a distance block: the float32 products, and room for candidates.
_BYTES_PER_ELEMENT = 5
# Rows of the sub-blocks of search_all's diagonal blocks: only those on and above the
# diagonal are computed (10 of 16 in a block of 2048 rows), and at 512 rows the float32
# products still run at about 95 % of the rate of large ones.
_DIAGONAL_STEP = 512


@contextlib.contextmanager
def _blas_threads(count: int):
    """Run the block with BLAS limited to count threads, as set before afterwards."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=count, user_api="blas"):
        yield


def error_coefficient(dimensions: int) -> float:
    """Return c with |v − ‖a − b‖²| ≤ c·(‖a‖ + ‖b‖)² for the float32 estimate v."""
    # Any float32 inner product of length d errs by at most γ_d·Σ|a_i b_i| ≤ γ_d‖a‖‖b‖
    # (Higham, Accuracy and Stability, 3.1), whatever the summation order or FMA use;
    # 2‖a‖‖b‖ ≤ (‖a‖ + ‖b‖)²/2. Rounding ‖a‖² and ‖b‖² to float32 adds u(‖a‖² + ‖b‖²),
    # and each of the two additions u times a sum below (1 + γ_d)(‖a‖ + ‖b‖)²: in all
    # less than (γ_d/2 + 3u(1 + γ_d))(‖a‖ + ‖b‖)², which γ_d + 3u covers with room.
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
    # In row chunks: a mask of the whole array would cost a byte per value, and the
    # service's memory-mapped base would otherwise need it in every worker.
    rows = max(1, (64 << 20) // max(1, array.itemsize * array.shape[1]))
    for start in range(0, len(array), rows):
        if not np.isfinite(array[start:start + rows]).all():
            raise ValueError(f"{name} contain NaN or infinite values")
    return array


def _as_ids(ids, count: int, name: str) -> np.ndarray:
    array = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(array) != count:
        raise ValueError(f"{name}: expected {count} ids, got {len(array)}")
    return array


def exact_squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return Σ(a_i − b_i)² row by row in float64, bit for bit as the searches do."""
    a, b = _as_matrix(a, "vectors"), _as_matrix(b, "vectors")
    out = np.empty(len(a))
    # The argument types of _rank's call, so that the same compiled loop runs.
    kernels.squared_distances(a, b, np.arange(len(a), dtype=np.int32),
                              np.arange(len(a), dtype=np.int64), out)
    return out


class ExactIndex:
    """Base vectors prepared for exact k-nearest-neighbour searches."""

    def __init__(self, vectors, ids, threads: int | None = None):
        self.vectors = _as_matrix(vectors, "base vectors")
        self.ids = _as_ids(ids, len(self.vectors), "base ids")
        if len(np.unique(self.ids)) != len(self.ids):
            raise ValueError("base ids must be unique")
        self.dimensions = self.vectors.shape[1]
        self.squared_norms = _squared_norms(self.vectors)
        self.max_norm = (float(np.sqrt(self.squared_norms.max()))
                         if len(self.squared_norms) else 0.0)
        # Stay far from float32 overflow so that no product or sum becomes infinite.
        if self.max_norm > 1e18:
            raise ValueError(f"vector norm {self.max_norm:.3g} is too large")
        self.squared_norms32 = self.squared_norms.astype(np.float32)
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

    def _slack(self, squared_norms: np.ndarray) -> np.ndarray:
        """Twice the error bound of any estimate v in rows of these norms, in float64."""
        return 2 * (error_coefficient(self.dimensions)
                    * (np.sqrt(squared_norms) + self.max_norm) ** 2 + _TINY)

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
               column_bounds=None):
        """Return (ids, distances) of each query row's k nearest base rows, self excluded.

        ids is an (n, k) int64 array padded with −1 and distances an (n, k) float64 array
        of Euclidean distances padded with inf, where fewer than k base rows are left.
        Rows are ordered by distance, then by neighbour id.

        column_bounds, if given, holds a squared distance per base row (−inf for none),
        and a third result comes back from the same distance blocks: (base rows, query
        rows, distances) of every pair within its base row's bound, self excluded, and
        maybe of pairs a little beyond it (within the float32 estimate's error), in no
        order; the distances have the same bits as in any list.
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
        pairs = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0))
        if column_bounds is not None:
            column_bounds = np.asarray(column_bounds, dtype=np.float64).reshape(len(self))
        if not len(query) or not len(self):
            return (ids, distances) if column_bounds is None else (ids, distances, pairs)
        numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))
        rows, columns = self.block_shape(len(query), memory_bytes)
        rows, columns = block_rows or rows, block_columns or columns
        positions = self._positions(query_ids)
        found = []
        for start in range(0, len(query), rows):
            stop = min(start + rows, len(query))
            ids[start:stop], distances[start:stop], (base_rows, query_rows) = \
                self._search_block(query[start:stop], positions[start:stop], k, columns,
                                   column_bounds)
            found.append((base_rows, query_rows + start))
        if column_bounds is None:
            return ids, distances
        base_rows = np.concatenate([b for b, _ in found])
        query_rows = np.concatenate([q for _, q in found])
        squared = np.empty(len(base_rows))
        kernels.squared_distances(query, self.vectors, query_rows.astype(np.int32),
                                  base_rows, squared)
        return ids, distances, (base_rows, query_rows, np.sqrt(squared))

    def _search_block(self, query, positions, k, columns, column_bounds):
        """Return the block's (ids, distances) and the (base rows, query rows) of the
        pairs that may be within column_bounds."""
        squared_norms = _squared_norms(query)
        query_norms = squared_norms.astype(np.float32)
        candidates = _Candidates(k, self._slack(squared_norms))
        minus_two_query = query * np.float32(-2)  # exact: a power of two
        if column_bounds is None:
            column_threshold = np.full(len(self), -np.inf)
        else:
            # v errs by at most c(‖a‖ + ‖b‖)² (error_coefficient), here with the
            # largest query norm for a.
            column_threshold = column_bounds + 2 * (
                error_coefficient(self.dimensions)
                * (np.sqrt(self.squared_norms) + np.sqrt(squared_norms.max())) ** 2 + _TINY)
        base_rows, query_rows = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.int64)]
        for start in range(0, len(self), columns):
            stop = min(start + columns, len(self))
            products = minus_two_query @ self.vectors[start:stop].T
            inside = (positions >= start) & (positions < stop)
            own = np.where(inside, positions - start, -1)
            candidates.seed(products, query_norms, self.squared_norms32[start:stop], own)
            mine, theirs = kernels.select(products, query_norms,
                                          self.squared_norms32[start:stop],
                                          candidates.threshold,
                                          column_threshold[start:stop], own)
            candidates.extend(*mine, start)
            base_rows.append(theirs[0].astype(np.int64) + start)
            query_rows.append(theirs[1].astype(np.int64))
        return (*self._rank(query, *candidates.finish(), k),
                (np.concatenate(base_rows), np.concatenate(query_rows)))

    def search_all(self, k: int, memory_bytes: int = 256 << 20,
                   block_rows: int | None = None, submit=None, in_flight: int | None = None):
        """Yield (start, stop, ids, distances) of every base row's k nearest, in row order.

        The same lists as search(base, ids, k), in about half the products: the
        distance block of rows I and columns J also serves rows J and columns I.

        The blocks run on this index's threads, or where submit sends them (a cluster's
        workers): submit(function, *arguments) runs function(this index, *arguments)
        there (block_candidates and rank_rows) and returns a future (done(), result());
        in_flight of them at a time (default 2 per thread).
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if submit is not None:
            yield from self._search_all(k, memory_bytes, block_rows, submit,
                                        in_flight or 2 * self.threads)
            return
        # Each thread computes whole blocks, the float32 products with one BLAS thread
        # and then the selection: with BLAS on all cores, its idle threads spin for
        # milliseconds after each product, which slowed the selection that followed by
        # about as much again.
        with _blas_threads(1), ThreadPoolExecutor(
                self.threads, initializer=numba.set_num_threads, initargs=(1,)) as pool:
            yield from self._search_all(
                k, memory_bytes, block_rows,
                lambda function, *arguments: pool.submit(function, self, *arguments),
                in_flight or 2 * self.threads)

    def _search_all(self, k, memory_bytes, block_rows, submit, in_flight):
        n = len(self)
        # A square float32 block and room for its candidates per block in flight in
        # this process; block_rows (--batch-size) may ask for fewer rows, never for
        # more memory.
        rows = max(1, min(block_rows or 2048,
                          int(np.sqrt(memory_bytes / _BYTES_PER_ELEMENT / (2 * self.threads)))))
        slack = self._slack(self.squared_norms)
        waiting: dict[int, _Candidates] = {}
        pending = deque()  # blocks in flight, and the ends of row blocks, in order
        ranking = deque()  # row blocks being ranked, in order

        def settle(limit):
            """Add the results of the oldest blocks until at most limit are in flight."""
            while len(pending) > limit:
                item = pending.popleft()
                if item[0] == "end":
                    _, start, stop, candidates = item
                    ranking.append((start, stop, submit(rank_rows, start, stop,
                                                        *candidates.finish(), k)))
                    continue
                _, (a, a_stop, b, _, rows_a, offset_a, rows_b, offset_b), future = item
                found, theirs, seeded_a, seeded_b = future.result()
                rows_a.tighten(seeded_a, a - offset_a)
                rows_a.extend(*found, b, a - offset_a)
                if theirs is not None:
                    rows_b.tighten(seeded_b, b - offset_b)
                    rows_b.extend(*theirs, a, b - offset_b)

        # Results are added here, in order; a block computed while an earlier one
        # tightened the thresholds used the looser ones (a superset).
        for i_start in range(0, n, rows):
            i_stop = min(i_start + rows, n)
            mine = waiting.pop(i_start, None) or _Candidates(k, slack[i_start:i_stop])
            # Sub-blocks of the diagonal block on and above its diagonal, then the
            # blocks to its right: each block off the diagonal serves both its sides.
            blocks = [(a, min(a + _DIAGONAL_STEP, i_stop), b,
                       min(b + _DIAGONAL_STEP, i_stop), mine, i_start, mine, i_start)
                      for a in range(i_start, i_stop, _DIAGONAL_STEP)
                      for b in range(a, i_stop, _DIAGONAL_STEP)]
            for j_start in range(i_stop, n, rows):
                j_stop = min(j_start + rows, n)
                other = waiting.get(j_start)
                if other is None:
                    other = waiting[j_start] = _Candidates(k, slack[j_start:j_stop])
                blocks.append((i_start, i_stop, j_start, j_stop, mine, i_start,
                               other, j_start))
            for block in blocks:
                a, a_stop, b, b_stop, rows_a, offset_a, rows_b, offset_b = block
                # The thresholds as views: this process's threads seed them in place
                # for the blocks after; a worker elsewhere sends its seeds back.
                pending.append(("block", block, submit(
                    block_candidates, a, a_stop, b, b_stop, k,
                    rows_a.threshold[a - offset_a:a_stop - offset_a],
                    None if a == b else rows_b.threshold[b - offset_b:b_stop - offset_b])))
                settle(in_flight)
                while ranking and ranking[0][2].done():
                    start, stop, future = ranking.popleft()
                    yield start, stop, *future.result()
            pending.append(("end", i_start, i_stop, mine))
        settle(0)
        for start, stop, future in ranking:
            yield start, stop, *future.result()

    def _rank(self, query, rows, columns, k):
        """Return the k best of the candidates by exact float64 distance, then id."""
        squared = np.empty(len(rows))
        # In the order of the base rows, so that a base row's several pairs in a row
        # block share one fetch from memory.
        by_column = np.argsort(columns, kind="stable")
        part = np.empty(len(rows))
        kernels.squared_distances(query, self.vectors, rows[by_column],
                                  columns[by_column], part)
        squared[by_column] = part
        ids = np.full((len(query), k), -1, dtype=np.int64)
        distances = np.full((len(query), k), np.inf)
        kernels.best_by_row(np.sqrt(squared), self.ids[columns],
                            *kernels.group_by_row(rows, len(query)), k, ids, distances)
        return ids, distances


def block_candidates(index: ExactIndex, a, a_stop, b, b_stop, k, threshold_a, threshold_b):
    """Return the candidates of the distance block of base rows a..a_stop against
    b..b_stop (a ≤ b) for both sides, as kernels.select does (None for the second where
    a = b), and the two sides' thresholds: those given, seeded (in place where they are
    writable) for rows that had none (inf). A unit of search_all's work."""
    products = (index.vectors[a:a_stop] * np.float32(-2)) @ index.vectors[b:b_stop].T
    norms_a, norms_b = index.squared_norms32[a:a_stop], index.squared_norms32[b:b_stop]
    rows_a = _Candidates(k, index._slack(index.squared_norms[a:a_stop]), threshold_a)
    if a == b:  # the same rows: self excluded, and one side is enough
        own = np.arange(a_stop - a)
        rows_a.seed(products, norms_a, norms_b, own)
        found, _ = kernels.select(products, norms_a, norms_b, rows_a.threshold,
                                  np.full(b_stop - b, -np.inf), own)
        return found, None, rows_a.threshold, None
    rows_b = _Candidates(k, index._slack(index.squared_norms[b:b_stop]), threshold_b)
    none = np.full(a_stop - a, -1)
    rows_a.seed(products, norms_a, norms_b, none)
    rows_b.seed(products.T, norms_b, norms_a, np.full(b_stop - b, -1))
    found, theirs = kernels.select(products, norms_a, norms_b, rows_a.threshold,
                                   rows_b.threshold, none)
    return found, theirs, rows_a.threshold, rows_b.threshold


def rank_rows(index: ExactIndex, start, stop, rows, columns, k):
    """Return (ids, distances) of base rows start..stop from their final candidates."""
    return index._rank(index.vectors[start:stop], rows, columns, k)


class _Candidates:
    """A block of query rows' candidates: every entry within slack of the row's k-th v."""

    def __init__(self, k: int, slack: np.ndarray, threshold: np.ndarray | None = None):
        self.n, self.k, self.slack = len(slack), k, slack
        # A threshold deserialised on a Dask worker is read-only: seeded in a copy.
        self.threshold = (np.full(self.n, np.inf) if threshold is None
                          else np.require(threshold, requirements="W"))
        self.rows, self.columns, self.values = [], [], []
        self.kept = 0

    def seed(self, products, row_norms, column_norms, own, row_offset: int = 0) -> None:
        """Give rows without a threshold one from a sample of this block's columns.

        products holds rows row_offset.. of these candidates."""
        if products.shape[1] <= self.k:
            return
        thresholds = self.threshold[row_offset:row_offset + len(products)]  # a view
        unset = np.flatnonzero(np.isinf(thresholds))
        if not len(unset):
            return
        # The k-th value of any k + 1 or more columns bounds the k-th of all of them; a
        # sample of the block gives a threshold at a fraction of the cost of selecting
        # over the whole block (_prune tightens it afterwards). About k/4096 of the
        # other columns pass it.
        width = min(products.shape[1], max(4096, 8 * self.k))
        # Whole rows where all are unset (the usual case): no gather, which for the
        # transposed blocks of search_all would cost more than the selection.
        part = products[:, :width] if len(unset) == len(products) else products[unset, :width]
        sample = (part + column_norms[:width]) + row_norms[unset, None]
        own = own[unset]
        mine = np.flatnonzero((own >= 0) & (own < width))
        sample[mine, own[mine]] = np.inf
        kth = np.partition(sample, self.k - 1, axis=1)[:, self.k - 1].astype(np.float64)
        thresholds[unset] = np.minimum(thresholds[unset],
                                       kth + self.slack[row_offset + unset])

    def tighten(self, thresholds: np.ndarray, row_offset: int) -> None:
        """Lower the thresholds of rows row_offset.. to these where they are lower."""
        mine = self.threshold[row_offset:row_offset + len(thresholds)]  # a view
        np.minimum(mine, thresholds, out=mine)

    def extend(self, rows, columns, values, column_offset: int, row_offset: int = 0):
        self.rows.append(rows + np.int32(row_offset) if row_offset else rows)
        self.columns.append(columns.astype(np.int64) + column_offset)
        self.values.append(values)
        self.kept += len(rows)
        if self.kept > 2 * self.n * (self.k + 16):
            self._prune()

    def _prune(self) -> None:
        self.rows, self.columns, self.values, threshold = _prune(
            self.rows, self.columns, self.values, self.n, self.k, self.slack)
        self.threshold = threshold
        self.kept = len(self.rows[0])

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (rows, columns) of the final candidates."""
        self._prune()
        return self.rows[0], self.columns[0]


def _prune(rows, columns, values, n, k, slack):
    """Keep the entries within slack of each row's k-th smallest v; return new threshold."""
    rows = np.concatenate(rows) if rows else np.empty(0, dtype=np.int32)
    columns = np.concatenate(columns) if columns else np.empty(0, dtype=np.int64)
    values = np.concatenate(values) if values else np.empty(0, dtype=np.float32)
    threshold = kernels.kth_by_row(values, *kernels.group_by_row(rows, n), k) + slack
    keep = values <= threshold[rows]
    return [rows[keep]], [columns[keep]], [values[keep]], threshold
