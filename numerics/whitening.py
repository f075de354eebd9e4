"""The learned space: signed square root, L2, PCA whitening to D dimensions, L2 again.

Learned once from the collection's own vectors, without labels (Jégou & Chum, "Negative
evidences and co-occurrences in image retrieval", ECCV 2012), stored, and applied to
every later image, so that the space stays the same between runs and incremental runs
stay exact in it. Whitening divides by the square roots of the covariance's eigenvalues;
the small ones are noise in a small collection and plain whitening then collapses
(bench/results/spaces.md), so the eigenvalues are shrunk first: λ + β·mean(λ kept).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from numerics import kernels

# Fewer images than this and the space is not learned: from 150 up, every one of a
# dozen random subsets of the flowers was better than pool3 on every measure.
MIN_IMAGES = 200
# The covariance of a random sample this large is as good as that of all vectors, and
# its cost (n · 2048² products) stays within seconds.
SAMPLE = 100_000
_CHUNK = 8192
# Eigenvalues below this fraction of the largest are rounding noise, not variance.
_RELATIVE_NOISE = 1e-10


def _normalised_roots(vectors: np.ndarray) -> np.ndarray:
    """Return sign(x)·sqrt(|x|) of each row, L2-normalised, in float64."""
    roots = np.sign(vectors) * np.sqrt(np.abs(vectors.astype(np.float64)))
    norms = np.linalg.norm(roots, axis=1, keepdims=True)
    return np.divide(roots, norms, out=np.zeros_like(roots), where=norms > 0)


@dataclass(frozen=True)
class Projection:
    """A learned whitening: x ↦ L2(((L2(ssqrt(x)) − mean) · components) / scales)."""

    mean: np.ndarray        # (d,) float64
    components: np.ndarray  # (d, D) float64, columns by decreasing eigenvalue
    scales: np.ndarray      # (D,) float64, sqrt(λ + β·mean λ)
    learned_from: int       # images in the sample it was learned from
    learned_at: datetime
    shrinkage: float

    @property
    def dimensions(self) -> int:
        return self.components.shape[1]

    @property
    def token(self) -> str:
        """What identifies the projection where lists or files say which one they were
        made with: when it was learned."""
        return self.learned_at.isoformat()

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Return the (n, D) float32 projections of (n, d) float32 vectors.

        Each row is computed on its own in a fixed order (numerics/kernels.py), so a
        vector gets the same bits whatever batch it comes in: the incremental runs, which
        project every vector again, see the values the full run saw."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != len(self.mean):
            raise ValueError(f"expected vectors of {len(self.mean)} values, "
                             f"got shape {vectors.shape}")
        out = np.empty((len(vectors), self.dimensions), dtype=np.float32)
        kernels.project(vectors, self.mean, self.components, 1.0 / self.scales, out)
        return out

    def to_bytes(self) -> bytes:
        """Return the arrays as an .npz file (numbers only: loaded without pickle)."""
        buffer = io.BytesIO()
        np.savez(buffer, mean=self.mean, components=self.components, scales=self.scales)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, learned_from: int, learned_at: datetime,
                   shrinkage: float) -> "Projection":
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            mean, components, scales = (arrays[name] for name in
                                        ("mean", "components", "scales"))
        if (mean.ndim != 1 or components.shape[0] != len(mean) or scales.ndim != 1
                or components.shape[1] != len(scales) or not np.all(scales > 0)):
            raise ValueError("the stored projection is damaged")
        return cls(mean.astype(np.float64), np.ascontiguousarray(components, np.float64),
                   scales.astype(np.float64), learned_from, learned_at, shrinkage)


def learn(vectors: np.ndarray, dimensions: int, learned_at: datetime, shrinkage: float,
          sample: int = SAMPLE, seed: int = 0) -> Projection:
    """Learn the projection to at most `dimensions` from (a sample of) the vectors, the
    eigenvalues raised by shrinkage · their mean (WHITENED_SHRINKAGE).

    Only directions in which the vectors vary are kept: n vectors span at most n − 1
    around their mean, and the others have no variance to whiten. Raises ValueError
    when there is none."""
    n, d = vectors.shape
    if n < 2:
        raise ValueError(f"cannot learn a projection from {n} vectors")
    if n > sample:
        rows = np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))
        vectors, n = vectors[rows], sample
    mean = np.zeros(d)
    for start in range(0, n, _CHUNK):
        mean += _normalised_roots(vectors[start:start + _CHUNK]).sum(axis=0)
    mean /= n
    if n < d:
        # Fewer vectors than dimensions: the n × n Gram matrix has the covariance's
        # non-zero eigenvalues, and its eigenvectors give the covariance's (PCA by
        # "snapshots"), in a fraction of the time.
        centred = _normalised_roots(vectors) - mean
        eigenvalues, snapshots = np.linalg.eigh(centred @ centred.T / n)
        eigenvectors = centred.T @ snapshots
    else:
        covariance = np.zeros((d, d))
        for start in range(0, n, _CHUNK):
            centred = _normalised_roots(vectors[start:start + _CHUNK]) - mean
            covariance += centred.T @ centred
        eigenvalues, eigenvectors = np.linalg.eigh(covariance / n)
    order = np.argsort(eigenvalues)[::-1]
    varying = eigenvalues[order] > _RELATIVE_NOISE * max(eigenvalues.max(), 0.0)
    order = order[varying][:dimensions]
    if not len(order):
        raise ValueError("the vectors do not vary: there is no space to learn")
    eigenvalues = eigenvalues[order]
    components = eigenvectors[:, order]
    components /= np.linalg.norm(components, axis=0)
    # An eigenvector's sign is arbitrary; fix it so that learning twice gives one result.
    flip = components[np.abs(components).argmax(axis=0), np.arange(len(order))] < 0
    components[:, flip] *= -1
    scales = np.sqrt(eigenvalues + shrinkage * eigenvalues.mean())
    return Projection(mean, np.ascontiguousarray(components), scales, n, learned_at,
                      shrinkage)
