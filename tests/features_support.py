"""Helpers for the feature job's tests: generated JPEGs, the model once, database snapshots."""
from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select

from db.engine import make_engine
from db.models import Image, ImageFeatures

ROOT = Path(__file__).resolve().parent.parent
MODEL_CACHE = ROOT / "data" / "inception_v3_2015_12_05.weights.h5"


@functools.lru_cache(maxsize=1)
def shared_extractor():
    """Load the real extractor once per test session (the weights cache makes it fast)."""
    from model import load_extractor
    return load_extractor(MODEL_CACHE)


def picture(seed: int, width: int = 96, height: int = 72) -> PILImage.Image:
    """Return a smooth random RGB picture: distinct per seed, cheap, deterministic."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    image = PILImage.fromarray(coarse).resize((width, height), PILImage.BILINEAR)
    return image


def write_jpeg(path: Path | bytes, seed: int, width: int = 96, height: int = 72,
               **save) -> None:
    """Write a generated JPEG at `path` (str, Path or raw bytes), making its folders."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as file:
        picture(seed, width, height).save(file, "JPEG", quality=90, **save)


def image_rows(database_url: str) -> dict[str, dict]:
    """Return the images rows keyed by path, without the timestamps that runs change."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(Image)).mappings().all()
    finally:
        engine.dispose()
    return {row["path"]: dict(row) for row in rows}


def feature_rows(database_url: str) -> dict[int, dict]:
    """Return the image_features rows keyed by image id."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(ImageFeatures)).mappings().all()
    finally:
        engine.dispose()
    return {row["image_id"]: dict(row) for row in rows}


def by_path(database_url: str) -> dict[str, dict]:
    """Return each image's row and vector keyed by path, without ids or timestamps."""
    features = feature_rows(database_url)
    result = {}
    for path, row in image_rows(database_url).items():
        entry = {k: v for k, v in row.items() if k not in ("id", "created_at", "updated_at")}
        feature = features.get(row["id"])
        entry["model"] = feature["model"] if feature else None
        entry["vector"] = np.frombuffer(feature["vector"], "<f4") if feature else None
        result[path] = entry
    return result


def assert_same(url, reference_url):
    got, want = by_path(url), by_path(reference_url)
    assert sorted(got) == sorted(want)
    for path in want:
        a, b = dict(got[path]), dict(want[path])
        vector_a, vector_b = a.pop("vector"), b.pop("vector")
        assert a == b, path
        # Batches fall differently after a kill; oneDNN may then round differently.
        if vector_b is None:
            assert vector_a is None
        else:
            np.testing.assert_allclose(vector_a, vector_b, rtol=1e-4, atol=1e-4)


# root reads every file whatever its mode; to see "permission denied" for real, the
# command then runs as 'nobody' (setpriv drops root). Others run as themselves.
AS_OTHER_USER = (["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
                 if os.geteuid() == 0 else [])


@contextlib.contextmanager
def open_tmp():
    """Yield a temporary folder that the other user of AS_OTHER_USER can use too."""
    with tempfile.TemporaryDirectory(prefix="features-test-") as folder:
        os.chmod(folder, 0o777)
        yield Path(folder)
