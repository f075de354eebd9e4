"""Compiled loops of the neighbour engine (numba), for what numpy does in many passes.

They release the GIL; the parallel ones use as many of numba's threads as the calling
thread allows (search_all's workers allow one each). Compiled on first use (about 30 s
here) and cached beside this file, or in NUMBA_CACHE_DIR.
"""
from __future__ import annotations

import numba
import numpy as np


# reassoc lets LLVM vectorize the sum (about 4× the scalar loop). The order it picks is
# fixed in the compiled loop, the same for every pair and call on a machine (the
# vectorized loop and its remainder depend on d only), though it may differ between
# CPUs of different vector widths, in the last bits.
@numba.njit(nogil=True, parallel=True, cache=True, fastmath={"reassoc", "nsz"})
def squared_distances(query, base, rows, columns, out):
    """out[p] = Σ(query[rows[p]] − base[columns[p]])², in float64.

    Differences of float32 values are exact in float64, so near-duplicates keep their
    tiny distances, and the terms are non-negative, so the sum errs by at most about
    d·2⁻⁵³ relative in any order. (a − b)² = (b − a)², so a pair gets the same bits
    whichever side is the query, in every search.
    """
    d = query.shape[1]
    for p in numba.prange(len(rows)):
        a = query[rows[p]]
        b = base[columns[p]]
        total = 0.0
        for i in range(d):
            x = np.float64(a[i]) - np.float64(b[i])
            total += x * x
        out[p] = total


_CHUNK = 64  # columns per flag of _count: _fill reads only the chunks that have entries


@numba.njit(nogil=True, parallel=True, cache=True)
def _count(products, row_norms, column_norms, row_threshold, column_threshold, own):
    n, m = products.shape
    chunks = (m + _CHUNK - 1) // _CHUNK
    counts = np.zeros((n, 2), dtype=np.int64)
    flags = np.zeros((n, chunks), dtype=np.bool_)
    for i in numba.prange(n):
        limit = row_threshold[i]
        norm = row_norms[i]
        for c in range(chunks):
            # Slices indexed from 0: numba then needs no check for negative indices,
            # and the loop is vectorised (8× faster than with indices from c·_CHUNK).
            part = products[i, c * _CHUNK:(c + 1) * _CHUNK]
            part_norms = column_norms[c * _CHUNK:(c + 1) * _CHUNK]
            part_thresholds = column_threshold[c * _CHUNK:(c + 1) * _CHUNK]
            rows_kept = np.int32(0)
            columns_kept = np.int32(0)
            for j in range(len(part)):
                v = (part[j] + part_norms[j]) + norm
                rows_kept += np.int32(v <= limit)
                columns_kept += np.int32(v <= part_thresholds[j])
            counts[i, 0] += rows_kept
            counts[i, 1] += columns_kept
            flags[i, c] = (rows_kept | columns_kept) != 0
        j = own[i]
        if 0 <= j < m:
            v = (products[i, j] + column_norms[j]) + norm
            counts[i, 0] -= v <= limit
            counts[i, 1] -= v <= column_threshold[j]
    return counts, flags


@numba.njit(nogil=True, parallel=True, cache=True)
def _fill(products, row_norms, column_norms, row_threshold, column_threshold, own,
          flags, starts, rows, columns, values):
    n, m = products.shape
    for i in numba.prange(n):
        at_row = starts[i, 0]
        at_column = starts[i, 1]
        limit = row_threshold[i]
        for c in range(flags.shape[1]):
            if not flags[i, c]:
                continue
            for j in range(c * _CHUNK, min(m, (c + 1) * _CHUNK)):
                if j == own[i]:
                    continue
                v = (products[i, j] + column_norms[j]) + row_norms[i]
                if v <= limit:
                    rows[at_row] = i
                    columns[at_row] = j
                    values[at_row] = v
                    at_row += 1
                if v <= column_threshold[j]:
                    rows[at_column] = j
                    columns[at_column] = i
                    values[at_column] = v
                    at_column += 1


def round_up32(values: np.ndarray) -> np.ndarray:
    """Return the least float32 values not below the float64 ones."""
    rounded = values.astype(np.float32)
    low = rounded.astype(np.float64) < values
    rounded[low] = np.nextafter(rounded[low], np.float32(np.inf))
    return rounded


def select(products, row_norms, column_norms, row_threshold, column_threshold, own):
    """Return the entries of a block that pass a threshold, for its rows and its columns.

    The block's value at (i, j) is the float32 v = (products[i, j] + column_norms[j])
    + row_norms[i], an estimate of the squared distance, the same for both sides. Returns
    ((rows, columns, values) of the entries with v ≤ row_threshold[i], and the same, as
    (j, i, v), of those with v ≤ column_threshold[j]), each in row order; the entry
    (i, own[i]) is left out (own[i] = −1 for none). The float64 thresholds are rounded
    up to float32: for float32 v the test stays the same, except that a v equal to a
    rounded-up threshold passes too. Pass −inf thresholds for a side not wanted.
    """
    row_threshold = round_up32(row_threshold)
    column_threshold = round_up32(column_threshold)
    counts, flags = _count(products, row_norms, column_norms, row_threshold,
                           column_threshold, own)
    totals = counts.sum(axis=0)
    starts = np.empty_like(counts)
    starts[:, 0] = np.cumsum(counts[:, 0]) - counts[:, 0]
    starts[:, 1] = np.cumsum(counts[:, 1]) - counts[:, 1] + totals[0]
    total = int(totals.sum())
    rows = np.empty(total, dtype=np.int32)
    columns = np.empty(total, dtype=np.int32)
    values = np.empty(total, dtype=np.float32)
    _fill(products, row_norms, column_norms, row_threshold, column_threshold, own,
          flags, starts, rows, columns, values)
    split = int(totals[0])
    return ((rows[:split], columns[:split], values[:split]),
            (rows[split:], columns[split:], values[split:]))


@numba.njit(nogil=True, cache=True)
def group_by_row(rows, n):
    """Return (order, starts): order lists the entries row by row (stable), row r's
    entries being order[starts[r]:starts[r + 1]]."""
    starts = np.zeros(n + 1, dtype=np.int64)
    for r in rows:
        starts[r + 1] += 1
    for r in range(n):
        starts[r + 1] += starts[r]
    at = starts[:-1].copy()
    order = np.empty(len(rows), dtype=np.int64)
    for e in range(len(rows)):
        order[at[rows[e]]] = e
        at[rows[e]] += 1
    return order, starts


@numba.njit(nogil=True, parallel=True, cache=True)
def kth_by_row(values, order, starts, k):
    """Return each row's k-th smallest value, inf where a row has fewer than k."""
    n = len(starts) - 1
    out = np.full(n, np.inf)
    for r in numba.prange(n):
        if starts[r + 1] - starts[r] >= k:
            out[r] = np.partition(values[order[starts[r]:starts[r + 1]]], k - 1)[k - 1]
    return out


@numba.njit(nogil=True, parallel=True, cache=True)
def best_by_row(distance, neighbours, order, starts, k, ids, distances):
    """Fill each row of ids/distances with its k entries of least (distance, neighbour).

    By the Euclidean distance, not its square: squares that differ in the last bit can
    have the same square root, and such ties go by neighbour id."""
    for r in numba.prange(len(starts) - 1):
        entries = order[starts[r]:starts[r + 1]]
        by_id = entries[np.argsort(neighbours[entries], kind="mergesort")]
        best = by_id[np.argsort(distance[by_id], kind="mergesort")]
        for rank in range(min(k, len(best))):
            ids[r, rank] = neighbours[best[rank]]
            distances[r, rank] = distance[best[rank]]


_PROJECT_ROWS = 8  # rows projected together, their sums kept in the first-level cache


@numba.njit(nogil=True, parallel=True, cache=True)
def project(vectors, mean, components, inverse_scales, out):
    """out[r] = L2(((L2(ssqrt(v_r)) − mean) · components) · inverse_scales), float64 inside.

    No fastmath: every sum runs over its terms in index order, so a row's result does
    not depend on the other rows of the batch, on the threads, or on the batch's size.
    """
    n, d = vectors.shape
    dimensions = components.shape[1]
    for tile in numba.prange((n + _PROJECT_ROWS - 1) // _PROJECT_ROWS):
        start = tile * _PROJECT_ROWS
        rows = min(n, start + _PROJECT_ROWS) - start
        x = np.empty((d, rows))  # by column: the product below reads x[i, :] in turn
        for r in range(rows):
            total = 0.0
            for i in range(d):
                value = np.float64(vectors[start + r, i])
                root = np.sqrt(abs(value))
                x[i, r] = root if value >= 0 else -root
                total += abs(value)  # the square of the root
            scale = 1.0 / np.sqrt(total) if total > 0 else 0.0
            for i in range(d):
                x[i, r] = x[i, r] * scale - mean[i]
        projected = np.zeros((rows, dimensions))
        for i in range(d):
            weights = components[i]
            for r in range(rows):
                value = x[i, r]
                for j in range(dimensions):
                    projected[r, j] += value * weights[j]
        for r in range(rows):
            total = 0.0
            for j in range(dimensions):
                projected[r, j] *= inverse_scales[j]
                total += projected[r, j] * projected[r, j]
            scale = 1.0 / np.sqrt(total) if total > 0 else 0.0
            for j in range(dimensions):
                out[start + r, j] = np.float32(projected[r, j] * scale)
