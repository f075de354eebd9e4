"""The exact k-NN engine against the float64 brute force of tests/oracle.py."""
from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from numerics import engine, kernels
from numerics.engine import ExactIndex, error_coefficient, exact_squared_distances
import oracle


def brute_force(query, query_ids, base, base_ids, k):
    """Return the oracle's lists, each with its row of all float64 distances."""
    squared = oracle.squared_distances(query, base)
    return [(ids, distances, row) for (ids, distances), row in zip(
        oracle.nearest(query, base, base_ids, k, query_ids, squared), np.sqrt(squared))]


def assert_exact(found_ids, found_distances, query, query_ids, base, base_ids, k,
                 strict=False):
    """Check the engine's lists against the brute force, row by row.

    strict: the data make every distance exact in float64, so even ties must match id
    for id. Otherwise the two float64 computations may differ in the last bits, and the
    checks allow for that, and only that.
    """
    id_to_column = {int(i): c for c, i in enumerate(base_ids)}
    for row, (ref_ids, ref_distances, all_distances) in enumerate(
            brute_force(query, query_ids, base, base_ids, k)):
        ids, distances = found_ids[row], found_distances[row]
        length = len(ref_ids)
        assert (ids[length:] == -1).all() and np.isinf(distances[length:]).all()
        ids, distances = ids[:length], distances[:length]
        if strict:
            np.testing.assert_array_equal(ids, ref_ids)
            np.testing.assert_array_equal(distances, ref_distances)
            continue
        assert len(set(ids.tolist())) == length and query_ids[row] not in ids
        # Ordered by distance, exact ties by id.
        assert (np.diff(distances) >= 0).all()
        tied = np.diff(distances) == 0
        assert (np.diff(ids)[tied] > 0).all()
        # Each distance is the pair's true distance, and the k smallest are all there.
        true = all_distances[[id_to_column[int(i)] for i in ids]]
        np.testing.assert_allclose(distances, true, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(distances, ref_distances, rtol=1e-12, atol=1e-300)
        if length:
            surely_in = ref_ids[ref_distances < distances[-1] * (1 - 1e-12)]
            assert set(surely_in.tolist()) <= set(ids.tolist())


@st.composite
def problems(draw, values):
    d = draw(st.integers(1, 6))
    n = draw(st.integers(1, 40))
    base = draw(arrays(np.float32, (n, d), elements=values))
    ids = np.array(draw(st.lists(st.integers(1, 10 ** 6), min_size=n, max_size=n,
                                 unique=True)), dtype=np.int64)
    k = draw(st.integers(1, 45))
    block_rows = draw(st.integers(1, 9))
    block_columns = draw(st.integers(1, 13))
    return base, ids, k, block_rows, block_columns


small_integers = st.integers(-3, 3).map(float)
floats = st.floats(-1e3, 1e3, width=32, allow_subnormal=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(small_integers))
def test_ties_and_duplicates_match_the_brute_force_exactly(problem):
    # Small integers: many duplicates (distance 0) and exact ties, all exact in float64.
    base, ids, k, block_rows, block_columns = problem
    index = ExactIndex(base, ids)
    found = index.search(base, ids, k, block_rows=block_rows, block_columns=block_columns)
    assert_exact(*found, base, ids, base, ids, k, strict=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(floats), st.data())
def test_random_vectors_of_very_different_norms_match_the_brute_force(problem, data):
    base, ids, k, block_rows, block_columns = problem
    scales = data.draw(arrays(np.float32, len(base), elements=st.sampled_from(
        [1e-6, 1e-3, 1.0, 1e3, 1e6])))
    base = base * scales[:, None]
    index = ExactIndex(base, ids)
    found = index.search(base, ids, k, block_rows=block_rows, block_columns=block_columns)
    assert_exact(*found, base, ids, base, ids, k)


@settings(max_examples=30, deadline=None)
@given(problems(floats), st.integers(0, 5))
def test_queries_outside_the_base(problem, count):
    # Merging new images into other lists: the queries are not in the base, nothing to skip.
    base, ids, k, block_rows, block_columns = problem
    rng = np.random.default_rng(count)
    query = rng.normal(size=(count, base.shape[1])).astype(np.float32)
    query_ids = -np.arange(1, count + 1)
    found = ExactIndex(base, ids).search(query, query_ids, k, block_rows=block_rows,
                                         block_columns=block_columns)
    assert_exact(*found, query, query_ids, base, ids, k)


@pytest.mark.parametrize("memory", [1 << 12, 1 << 20, 256 << 20])
def test_pool3_like_vectors_and_near_duplicates(memory):
    # d = 2048, non-negative like pool_3, with near-duplicates a float32 product cannot
    # tell apart: only the float64 re-ranking orders them right.
    rng = np.random.default_rng(7)
    base = np.maximum(rng.normal(size=(300, 2048)), 0).astype(np.float32)
    for copy, source in ((10, 3), (11, 3), (12, 3), (20, 4)):
        base[copy] = base[source]
        base[copy, copy] += np.float32(1e-6) * copy
    base[13] = base[3]  # an exact duplicate too
    ids = np.arange(5, 305, dtype=np.int64)[::-1].copy()  # ids not in row order
    found = ExactIndex(base, ids).search(base, ids, 25, memory_bytes=memory)
    assert_exact(*found, base, ids, base, ids, 25)
    row = 3
    assert found[0][row, 0] == ids[13] and found[1][row, 0] == 0.0
    assert found[1][row, 1] > 0 and found[1][row, 1] < 1e-4


def test_one_image_has_an_empty_list():
    ids, distances = ExactIndex(np.ones((1, 4)), [42]).search(np.ones((1, 4)), [42], 3)
    assert (ids == -1).all() and np.isinf(distances).all()


def test_block_shape_stays_within_the_memory_bound():
    index = ExactIndex(np.zeros((50_000, 2), dtype=np.float32), np.arange(50_000))
    for memory in (5, 1 << 16, 1 << 24, 2 << 30):
        rows, columns = index.block_shape(10_000, memory)
        assert rows >= 1 and columns >= 1
        assert rows * columns * 5 <= max(memory, 5)


def test_error_bound_is_above_the_float32_error_seen():
    # The estimate as the selection computes it: (−2a·b + ‖b‖²) + ‖a‖², in float32.
    rng = np.random.default_rng(3)
    a = np.abs(rng.normal(size=(64, 2048))).astype(np.float32)
    b = np.abs(rng.normal(size=(64, 2048))).astype(np.float32)
    a_norms = (a.astype(np.float64) ** 2).sum(1).astype(np.float32)
    b_norms = (b.astype(np.float64) ** 2).sum(1).astype(np.float32)
    v = ((a * np.float32(-2)) @ b.T + b_norms) + a_norms[:, None]
    assert v.dtype == np.float32
    exact = oracle.squared_distances(a, b)
    norms = np.linalg.norm(a, axis=1)[:, None] + np.linalg.norm(b, axis=1)[None, :]
    assert (np.abs(v - exact) <= error_coefficient(2048) * norms ** 2).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 70), st.integers(1, 70), st.integers(0, 2 ** 32 - 1), st.booleans())
def test_select_takes_exactly_the_entries_within_either_threshold(n, m, seed, one_side):
    # The block's entries for its rows and, without a transposed copy, for its columns.
    rng = np.random.default_rng(seed)
    products = rng.normal(size=(n, m)).astype(np.float32)
    products[rng.random((n, m)) < 0.3] = 0.5  # ties with the thresholds below
    row_norms = rng.random(n).astype(np.float32)
    column_norms = rng.random(m).astype(np.float32)
    v = (products + column_norms) + row_norms[:, None]
    row_threshold = v[np.arange(n), rng.integers(0, m, n)].astype(np.float64)
    column_threshold = v[rng.integers(0, n, m), np.arange(m)].astype(np.float64)
    row_threshold[rng.random(n) < 0.2] = np.inf
    if one_side:
        column_threshold[:] = -np.inf
    own = np.where(rng.random(n) < 0.5, rng.integers(0, m, n), -1)
    (rows, columns, values), (their_rows, their_columns, their_values) = kernels.select(
        products, row_norms, column_norms, row_threshold, column_threshold, own)
    allowed = np.ones((n, m), dtype=bool)
    allowed[np.flatnonzero(own >= 0), own[own >= 0]] = False
    want = np.nonzero((v <= row_threshold[:, None]) & allowed)
    np.testing.assert_array_equal(rows, want[0])
    np.testing.assert_array_equal(columns, want[1])
    np.testing.assert_array_equal(values, v[want])
    want = np.nonzero((v <= column_threshold[None, :]) & allowed)
    np.testing.assert_array_equal(their_rows, want[1])
    np.testing.assert_array_equal(their_columns, want[0])
    np.testing.assert_array_equal(their_values, v[want])


def test_exact_distances_have_the_same_bits_whatever_the_call():
    # Searches compute a pair in different calls, batches and orders, and with either
    # vector as the query: incremental runs must equal full ones bit for bit.
    rng = np.random.default_rng(5)
    a = np.abs(rng.normal(size=(50, 2051))).astype(np.float32)
    b = np.abs(rng.normal(size=(50, 2051))).astype(np.float32)
    b[0] = a[0]
    b[1] = a[1] + np.float32(1e-6)
    together = exact_squared_distances(a, b)
    one_by_one = np.concatenate([exact_squared_distances(a[i:i + 1], b[i:i + 1])
                                 for i in range(len(a))])
    reordered = exact_squared_distances(b[::-1], a[::-1])[::-1]
    np.testing.assert_array_equal(together, one_by_one)
    np.testing.assert_array_equal(together, reordered)
    reference = ((a.astype(np.float64) - b) ** 2).sum(axis=1)
    np.testing.assert_allclose(together, reference, rtol=1e-13)
    assert together[0] == 0 and 0 < together[1] < 1e-8


def test_bad_input_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="NaN or infinite"):
        ExactIndex(np.array([[np.nan, 1.0]]), [1])
    with pytest.raises(ValueError, match="unique"):
        ExactIndex(np.zeros((2, 2)), [1, 1])
    with pytest.raises(ValueError, match="dimensions"):
        ExactIndex(np.zeros((2, 2)), [1, 2]).search(np.zeros((1, 3)), [5], 1)
    with pytest.raises(ValueError, match="k must be at least 1"):
        ExactIndex(np.zeros((2, 2)), [1, 2]).search(np.zeros((1, 2)), [5], 0)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(small_integers), st.booleans(), st.integers(1, 5))
def test_search_all_uses_symmetry_and_gives_the_same_lists(problem, scaled, step):
    # The full run's path: each distance block serves its rows and its columns, and the
    # diagonal blocks are computed in sub-blocks on and above the diagonal. Exact ties,
    # duplicates, N < k, blocks and sub-blocks that do not divide N.
    base, ids, k, block_rows, _ = problem
    if scaled:
        base = base * np.float32(1e3) ** np.arange(len(base)).reshape(-1, 1) % 7
    index = ExactIndex(base, ids)
    with mock.patch.object(engine, "_DIAGONAL_STEP", step):
        blocks = list(index.search_all(k, block_rows=block_rows))
    assert [start for start, *_ in blocks] == list(range(0, len(base), block_rows))
    found_ids = np.vstack([b[2] for b in blocks])
    found_distances = np.vstack([b[3] for b in blocks])
    assert_exact(found_ids, found_distances, base, ids, base, ids, k, strict=not scaled)
    same = index.search(base, ids, k)
    np.testing.assert_array_equal(found_ids, same[0])
    np.testing.assert_array_equal(found_distances, same[1])


@pytest.mark.parametrize("step", [512, 100])
def test_search_all_on_pool3_like_vectors(step):
    # Blocks large enough for sampled thresholds, pruning and the default sub-blocks.
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(20, 64))
    base = np.maximum(centres[rng.integers(0, 20, 1500)] + rng.normal(size=(1500, 64)),
                      0).astype(np.float32)
    base[700] = base[3]
    base[701] = base[3] + np.float32(1e-5)
    ids = rng.permutation(10 ** 6)[:1500]
    index = ExactIndex(base, ids)
    with mock.patch.object(engine, "_DIAGONAL_STEP", step):
        blocks = list(index.search_all(100, block_rows=600))
    found_ids = np.vstack([b[2] for b in blocks])
    found_distances = np.vstack([b[3] for b in blocks])
    assert_exact(found_ids, found_distances, base, ids, base, ids, 100)
    same = index.search(base, ids, 100, block_rows=256, block_columns=700)
    np.testing.assert_array_equal(found_ids, same[0])
    np.testing.assert_array_equal(found_distances, same[1])


class Finished:
    """A future that is done."""

    def __init__(self, value):
        self.value = value

    def done(self) -> bool:
        return True

    def result(self):
        return self.value


def test_search_all_with_its_blocks_run_elsewhere_gives_the_same_lists():
    # As on a cluster's workers (jobs/grouping/compute.py): each task gets copies of the
    # arrays, read-only as deserialised ones are, so the seeded thresholds must come back.
    rng = np.random.default_rng(12)
    centres = rng.normal(size=(20, 64))
    base = np.maximum(centres[rng.integers(0, 20, 1500)] + rng.normal(size=(1500, 64)),
                      0).astype(np.float32)
    ids = rng.permutation(10 ** 6)[:1500]
    index = ExactIndex(base, ids)
    calls = []

    def submit(function, *arguments):
        calls.append(function.__name__)
        copies = [a.copy() if isinstance(a, np.ndarray) else a for a in arguments]
        for a in copies:
            if isinstance(a, np.ndarray):
                a.setflags(write=False)
        return Finished(function(ExactIndex(base, ids, threads=1), *copies))

    elsewhere = list(index.search_all(100, block_rows=300, submit=submit, in_flight=3))
    here = list(index.search_all(100, block_rows=300))
    # 5 row blocks: each of the 5 · 6 / 2 blocks on and above the diagonal once, and
    # each row block ranked once.
    assert sorted(calls) == ["block_candidates"] * 15 + ["rank_rows"] * 5
    assert [b[:2] for b in elsewhere] == [b[:2] for b in here]
    for mine, theirs in zip(elsewhere, here):
        np.testing.assert_array_equal(mine[2], theirs[2])
        np.testing.assert_array_equal(mine[3], theirs[3])
    assert_exact(np.vstack([b[2] for b in elsewhere]), np.vstack([b[3] for b in elsewhere]),
                 base, ids, base, ids, 100)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(floats), st.data())
def test_column_bounds_give_every_pair_within_them(problem, data):
    # The pairs that new images make with the lists they may enter, from the same
    # distance blocks as the new images' own lists.
    base, ids, k, block_rows, block_columns = problem
    rows = data.draw(st.lists(st.integers(0, len(base) - 1), max_size=6, unique=True))
    query, query_ids = base[rows], ids[rows]
    exact = oracle.squared_distances(query, base)
    kind = data.draw(arrays(np.int8, len(base), elements=st.integers(0, 3)))
    bounds = np.where(kind == 0, -np.inf, np.where(kind == 1, np.inf, 0.0))
    for j in np.flatnonzero(kind >= 2):  # a tie with one of the pairs, or between
        i = data.draw(st.integers(0, max(0, len(query) - 1)))
        bounds[j] = exact[i, j] * (1 if kind[j] == 2 else 0.999) if len(query) else 1.0
    index = ExactIndex(base, ids)
    found_ids, found_distances, (base_rows, query_rows, distances) = index.search(
        query, query_ids, k, block_rows=block_rows, block_columns=block_columns,
        column_bounds=bounds)
    lists = index.search(query, query_ids, k, block_rows=block_rows,
                         block_columns=block_columns)
    np.testing.assert_array_equal(found_ids, lists[0])
    np.testing.assert_array_equal(found_distances, lists[1])
    pairs = set(zip(base_rows.tolist(), query_rows.tolist()))
    assert len(pairs) == len(base_rows)
    not_self = ids[None, :] != query_ids[:, None]
    want = {(j, i) for i, j in zip(*np.nonzero((exact <= bounds[None, :]) & not_self))}
    assert want <= pairs
    assert all(ids[j] != query_ids[i] and bounds[j] > -np.inf for j, i in pairs)
    # The same bits as the lists give the pair.
    same = exact_squared_distances(query[query_rows], base[base_rows])
    np.testing.assert_array_equal(distances, np.sqrt(same))
    np.testing.assert_allclose(distances ** 2, exact[query_rows, base_rows], rtol=1e-12,
                               atol=1e-300)


def test_ties_in_distance_whose_squares_differ_go_by_id():
    # Two squared distances one bit apart with the same square root: the lists are
    # ordered by distance, so the tie goes by neighbour id (a case hypothesis found).
    x = np.float32(3.2342755e-20)
    base = np.full((12, 3), x, dtype=np.float32)
    base[0, 0] = 0
    base[11] = [np.float32(1.9999999e-05), np.float32(8.7e-05), x]
    squared = ((base[11].astype(np.float64) - base[:2]) ** 2).sum(axis=1)
    assert squared[0] != squared[1] and np.sqrt(squared[0]) == np.sqrt(squared[1])
    ids = np.arange(1, 13)
    index = ExactIndex(base, ids)
    found = index.search(base, ids, 11)
    assert_exact(*found, base, ids, base, ids, 11)
    np.testing.assert_array_equal(found[0][11], np.arange(1, 12))
    blocks = list(index.search_all(11))
    np.testing.assert_array_equal(np.vstack([b[2] for b in blocks]), found[0])
