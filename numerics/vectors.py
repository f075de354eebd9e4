"""Feature vectors as stored: 2048 little-endian float32 values (8 KiB)."""
from __future__ import annotations

import numpy as np

DIMENSIONS = 2048
# Stored with every vector: the network, its layer and how the JPEG was decoded. A vector
# stored under another name is recomputed by the next feature run.
MODEL_NAME = "inception_v3_2015_12_05_pool_3_ifast"
# Earlier names, and why their vectors differ from MODEL_NAME's.
OUTDATED_MODELS = {
    "inception_v3_2015_12_05_pool_3":
        "decoded with libjpeg's accurate IDCT (ISLOW) instead of TensorFlow's default "
        "(IFAST), which the replaced system used",
}
_DTYPE = np.dtype("<f4")


def encode_vector(vector: np.ndarray) -> bytes:
    """Return the stored bytes of one vector of DIMENSIONS values."""
    vector = np.asarray(vector)
    if vector.shape != (DIMENSIONS,):
        raise ValueError(f"expected a vector of shape ({DIMENSIONS},), got {vector.shape}")
    return vector.astype(_DTYPE, copy=False).tobytes()


def decode_vector(data: bytes) -> np.ndarray:
    """Return the float32 vector stored in `data` (read-only, over the bytes)."""
    if len(data) != DIMENSIONS * _DTYPE.itemsize:
        raise ValueError(f"expected {DIMENSIONS * _DTYPE.itemsize} bytes, got {len(data)}")
    return np.frombuffer(data, dtype=_DTYPE).astype(np.float32, copy=False)
