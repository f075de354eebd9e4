"""Compile the engine's numba loops into numba's cache, for every argument type the jobs,
the service and Dask workers call them with, so that none of them compiles on its first
run (20-60 s, in every process). scripts/setup.sh and the Dockerfile run it:

    python -m numerics.precompile

numba keeps the cache beside numerics/kernels.py (or in NUMBA_CACHE_DIR) and uses it
while that file is unchanged, on CPUs of the same model and features; elsewhere it
compiles again, as without this step.
"""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from numerics import augmentation, whitening
from numerics.engine import ExactIndex, exact_squared_distances


def precompile() -> None:
    """Run each code path that calls a compiled loop once, on a few random vectors."""
    rows, k = 600, 5
    vectors = np.random.default_rng(0).random((rows, 64), dtype=np.float32)
    ids = np.arange(rows, dtype=np.int64)
    # Read-only indexes too: the service's memory-mapped search vectors are, and so may
    # be an index deserialised on a Dask worker; numba compiles those apart.
    for writeable in (True, False):
        index = ExactIndex(vectors.copy(), ids.copy(), threads=2)
        for array in (index.vectors, index.ids, index.squared_norms, index.squared_norms32):
            array.setflags(write=writeable)
        base = index.vectors
        for _ in index.search_all(k, block_rows=256):  # full runs
            pass
        index.search(base[:50], ids[:50], k)  # incremental runs, the service's search
        index.search(base[:50], ids[:50], k, column_bounds=np.ones(rows))  # new images
        # The augmented space: the job's vectors and the service's read-only ones.
        augmentation.augment(base, augmentation.all_nearest(index, 3, 1 << 20), 1.0)
    exact_squared_distances(vectors[:3], vectors[3:6])
    projection = whitening.learn(vectors, 8, datetime.now(timezone.utc), shrinkage=0.5)
    projection.apply(vectors[:10])


if __name__ == "__main__":
    precompile()
