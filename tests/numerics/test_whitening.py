"""The learned space's arithmetic against plain numpy/scipy, and its storage."""
from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
import scipy.linalg

from numerics.whitening import Projection, learn

WHEN = datetime(2026, 11, 25, 12, 0, 0, 123456)


def vectors(n: int, d: int = 64, seed: int = 0) -> np.ndarray:
    """Return non-negative vectors with a few strong directions, like pool_3's."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(8, d))
    return np.maximum(rng.normal(size=(n, 8)) @ basis + rng.normal(0, 0.3, (n, d)),
                      0).astype(np.float32)


def reference(x: np.ndarray, dimensions: int, shrinkage: float):
    """Signed root, L2, PCA whitening with shrunk eigenvalues, L2, by numpy and scipy."""
    roots = np.sign(x) * np.sqrt(np.abs(x.astype(np.float64)))
    roots /= np.linalg.norm(roots, axis=1, keepdims=True)
    mean = roots.mean(axis=0)
    covariance = np.cov(roots, rowvar=False, bias=True)
    values, vecs = scipy.linalg.eigh(covariance, subset_by_index=[
        len(covariance) - dimensions, len(covariance) - 1])
    values, vecs = values[::-1], vecs[:, ::-1]
    scales = np.sqrt(values + shrinkage * values.mean())
    projected = (roots - mean) @ vecs / scales
    return values, vecs, scales, projected / np.linalg.norm(projected, axis=1,
                                                             keepdims=True)


def test_learned_projection_is_pca_whitening_with_shrunk_eigenvalues():
    x = vectors(500)
    projection = learn(x, 16, WHEN, shrinkage=0.5)
    values, vecs, scales, expected = reference(x, 16, 0.5)
    assert projection.dimensions == 16 and projection.learned_from == 500
    np.testing.assert_allclose(projection.scales, scales, rtol=1e-9)
    # Eigenvectors are defined up to sign.
    signs = np.sign((projection.components * vecs).sum(axis=0))
    np.testing.assert_allclose(projection.components, vecs * signs, atol=1e-8)
    projected = projection.apply(x)
    assert projected.dtype == np.float32 and projected.shape == (500, 16)
    np.testing.assert_allclose(projected, expected * signs, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(projected, axis=1), 1, atol=1e-6)
    # Before the last L2 the learning set's covariance is λ / (λ + β·mean λ): whitened,
    # with the small directions damped rather than blown up.
    roots = np.sign(x) * np.sqrt(np.abs(x.astype(np.float64)))
    roots /= np.linalg.norm(roots, axis=1, keepdims=True)
    unscaled = (roots - projection.mean) @ projection.components / projection.scales
    np.testing.assert_allclose(np.cov(unscaled, rowvar=False, bias=True),
                               np.diag(values / (values + 0.5 * values.mean())), atol=1e-9)


def test_without_shrinkage_it_is_plain_whitening():
    x = vectors(300, seed=1)
    projection = learn(x, 8, WHEN, shrinkage=0.0)
    values, _, _, _ = reference(x, 8, 0.0)
    np.testing.assert_allclose(projection.scales ** 2, values, rtol=1e-9)


def test_a_projection_has_the_same_bits_in_any_batch():
    x = vectors(257, seed=2)
    projection = learn(x, 12, WHEN, shrinkage=0.5)
    whole = projection.apply(x)
    assert np.array_equal(whole, np.concatenate([projection.apply(x[i:i + 5])
                                                 for i in range(0, len(x), 5)]))
    assert np.array_equal(whole[::-1], projection.apply(x[::-1].copy()))
    assert np.array_equal(whole[100], projection.apply(x[100:101])[0])


def test_few_images_keep_only_the_directions_they_span():
    x = vectors(10, seed=3)
    projection = learn(x, 32, WHEN, shrinkage=0.5)
    assert projection.dimensions == 9  # 10 vectors span 9 directions around their mean
    assert np.isfinite(projection.apply(vectors(5, seed=4))).all()
    with pytest.raises(ValueError, match="cannot learn"):
        learn(x[:1], 32, WHEN, shrinkage=0.5)


def test_a_large_collection_is_learned_from_a_sample():
    x = vectors(400, seed=5)
    projection = learn(x, 8, WHEN, shrinkage=0.5, sample=150)
    assert projection.learned_from == 150
    assert projection.apply(x).shape == (400, 8)


def test_zero_and_negative_values_are_handled():
    x = vectors(50, seed=6)
    x[3] = 0  # a blank image's vector
    x[4, :10] = -1.5
    projected = learn(x, 8, WHEN, shrinkage=0.5).apply(x)
    assert np.isfinite(projected).all()


def test_stored_projection_reloads_bit_for_bit():
    projection = learn(vectors(200, seed=7), 16, WHEN, shrinkage=0.5)
    again = Projection.from_bytes(projection.to_bytes(), 200, WHEN, 0.5)
    for name in ("mean", "components", "scales"):
        assert np.array_equal(getattr(again, name), getattr(projection, name))
    assert np.array_equal(again.apply(vectors(20, seed=8)),
                          projection.apply(vectors(20, seed=8)))
    with pytest.raises(ValueError):
        Projection.from_bytes(b"not an npz file", 200, WHEN, 0.5)

