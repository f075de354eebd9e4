"""The augmented space's vectors and the images whose neighbours an incremental run must
recompute, against plain numpy and the oracle's brute force."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from numerics import augmentation
from numerics.engine import ExactIndex
import oracle

MEMORY = 1 << 24


def normalised(rng, n, d):
    vectors = rng.normal(size=(n, d)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def reference(vectors, ids, k, alpha):
    """α-weighted DBA in plain numpy: the oracle's k nearest, float64 sums."""
    x = vectors.astype(np.float64)
    out = np.empty_like(x)
    for row, (found, _) in enumerate(oracle.nearest(vectors, vectors, ids, k, ids)):
        total = x[row].copy()
        for j in np.searchsorted(ids, found):
            similarity = x[row] @ x[j]
            if similarity > 0:
                total += similarity ** alpha * x[j]
        out[row] = total / np.linalg.norm(total)
    return out


@pytest.mark.parametrize("k, alpha", [(1, 1.0), (3, 1.0), (5, 3.0), (4, 0.0)])
def test_augmented_vectors_equal_a_numpy_reference(k, alpha):
    rng = np.random.default_rng(k)
    vectors = normalised(rng, 120, 16)
    ids = np.sort(rng.choice(10_000, 120, replace=False))
    neighbours = augmentation.all_nearest(ExactIndex(vectors, ids), k, MEMORY)
    augmented = augmentation.augment(vectors, np.searchsorted(ids, neighbours), alpha)
    want = reference(vectors, ids, k, alpha)
    np.testing.assert_allclose(augmented, want, rtol=0, atol=1e-6)
    assert augmented.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(augmented.astype(np.float64), axis=1), 1,
                               atol=1e-6)


def test_a_vector_has_the_same_bits_in_any_batch():
    rng = np.random.default_rng(1)
    vectors = normalised(rng, 60, 32)
    neighbours = rng.integers(-1, 60, size=(60, 4))
    whole = augmentation.augment(vectors, neighbours, 1.0)
    rows = np.array([41, 3, 17])
    assert augmentation.augment(vectors, neighbours[rows], 1.0, rows).tobytes() == \
        whole[rows].tobytes()


def test_neighbours_no_closer_than_orthogonal_add_nothing():
    vectors = np.array([[1, 0], [-1, 0], [0, 1]], dtype=np.float32)
    out = augmentation.augment(vectors, np.array([[1, 2], [0, 2], [0, 1]]), 1.0)
    np.testing.assert_array_equal(out, vectors)


@hypothesis_settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), n=st.integers(2, 40), k=st.integers(1, 5),
       changes=st.integers(0, 6), removals=st.integers(0, 3), additions=st.integers(0, 4),
       exact_ties=st.booleans())
def test_stale_holds_every_image_whose_nearest_changed(seed, n, k, changes, removals,
                                                       additions, exact_ties):
    rng = np.random.default_rng(seed)

    def draw(count):
        # Small integers give exact ties in distance, decided by neighbour id.
        return (rng.integers(0, 3, size=(count, 3)).astype(np.float32) if exact_ties
                else normalised(rng, count, 6))

    ids = np.arange(1, n + 1) * 2
    before = draw(n)
    stored = augmentation.all_nearest(ExactIndex(before, ids), k, MEMORY)
    after = before.copy()
    changed = rng.choice(ids, min(changes, n), replace=False)
    after[np.searchsorted(ids, changed)] = draw(len(changed))
    removed = rng.choice(ids, min(removals, n - 1), replace=False)
    added = np.arange(additions) * 2 + 2 * n + 1
    now_ids = np.union1d(np.setdiff1d(ids, removed), added)
    now = np.empty((len(now_ids), after.shape[1]), dtype=np.float32)
    kept = np.isin(now_ids, ids)
    now[kept] = after[np.searchsorted(ids, now_ids[kept])]
    now[~kept] = draw(int((~kept).sum()))
    index = ExactIndex(now, now_ids)
    stale = augmentation.stale(index, ids, stored, np.union1d(changed, removed), MEMORY)
    truth = augmentation.all_nearest(index, k, MEMORY)
    for row, image_id in enumerate(now_ids.tolist()):
        want = oracle.nearest(now[row:row + 1], now, now_ids, k, [image_id])[0][0]
        assert truth[row][truth[row] >= 0].tolist() == want.tolist()
        if image_id in stale:
            continue
        # Not stale: an unchanged image whose stored nearest are still its nearest.
        assert image_id in ids and image_id not in changed
        assert stored[np.searchsorted(ids, image_id)].tolist() == truth[row].tolist()
        assert not np.isin(stored[np.searchsorted(ids, image_id)],
                           np.union1d(changed, removed)).any()
    assert np.isin(np.union1d(np.intersect1d(changed, now_ids), added), stale).all()
