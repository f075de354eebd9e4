"""The bundled sample images and the helpers of the fixtures built over them
(tests/jobs/conftest.py's in_process and samples, tests/service/conftest.py's)."""
from __future__ import annotations

from sqlalchemy import select

from db.engine import make_engine
from db.models import Image, ImageFeatures
from features_support import ROOT

SAMPLES = ROOT / "sample_images"
K = 10  # neighbours per image over the sample images
MAX_DISTANCE = 8.0  # the calibrated default (bench/results/duplicates.md)
EXCLUDED = "textures/gravel.jpg"  # the image test_duplicates' collection excludes
BATCH = 2  # images per model batch on the cluster: several batches and partitions from 27


def snapshot(url: str) -> dict:
    """Return the images and image_features tables without timestamps, keyed by id."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            images = {row["id"]: {k: v for k, v in row.items()
                                  if k not in ("created_at", "updated_at")}
                      for row in connection.execute(select(Image)).mappings()}
            features = {row.image_id: (row.model, bytes(row.vector)) for row in
                        connection.execute(select(ImageFeatures.image_id,
                                                  ImageFeatures.model,
                                                  ImageFeatures.vector))}
    finally:
        engine.dispose()
    return {"images": images, "features": features}


def cluster_settings(url, folder, **values):
    """The settings of test_cluster's runs over the sample images, BATCH per batch."""
    from runtime.settings import load_settings
    return load_settings({"DATABASE_URL": url, "IMAGE_ROOT": str(SAMPLES),
                          "MODEL_CACHE": str(ROOT / "data" /
                                             "inception_v3_2015_12_05.weights.h5"),
                          "BATCH_SIZE": str(BATCH), "VECTOR_CACHE": str(folder / "vectors"),
                          "THUMBNAIL_CACHE": str(folder / "thumbnails"),
                          **{k: str(v) for k, v in values.items()}},
                         env={}, env_file=None)
