"""The whole flow on both databases: the real feature job over the bundled sample images,
the real grouping job, then the service answering from what they stored."""
from __future__ import annotations

import numpy as np
from sqlalchemy import select

from db.engine import make_engine
from db.models import Image, ImageFeatures
from numerics.vectors import decode_vector
from jobs.features.job import run as run_features
from jobs.grouping.run import run as run_grouping
from service import create_app
from features_support import shared_extractor
from samples_support import K, SAMPLES
import oracle


def stored(settings) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    engine = make_engine(settings.database_url)
    with engine.connect() as connection:
        ids = dict(connection.execute(select(Image.path, Image.id)).all())
        rows = connection.execute(select(ImageFeatures.image_id, ImageFeatures.vector)
                                  .order_by(ImageFeatures.image_id)).all()
    engine.dispose()
    return ids, np.array([r[0] for r in rows]), np.stack([decode_vector(r[1]) for r in rows])


def test_jobs_and_service_agree_with_a_brute_force_over_the_stored_vectors(filled):
    settings, counts, _ = filled
    jpegs = sorted(SAMPLES.rglob("*.jpg"))
    assert counts["new"] == len(jpegs) and counts["failed"] == 0
    ids, vector_ids, vectors = stored(settings)
    assert len(ids) == len(jpegs) == len(vector_ids)

    lists = oracle.nearest(vectors, vectors, vector_ids, K, vector_ids)
    client = create_app(settings).test_client()
    assert client.get("/image_count").get_json() == len(jpegs)
    for row, image_id in enumerate(vector_ids):
        want_ids, want_distances = lists[row][0].tolist(), lists[row][1]
        body = client.get(f"/api/v1/images/{image_id}/neighbours?limit={K}").get_json()
        got = [(entry["distance"], entry["id"]) for entry in body["neighbours"]]
        assert [n for _, n in got] == want_ids
        np.testing.assert_allclose([d for d, _ in got], want_distances, rtol=1e-6)

        name, legacy = client.get(f"/image_name_and_neighbours/{image_id}").get_json()
        assert [entry["id"] for entry in legacy] == want_ids
        assert set(legacy[0]) == {"id", "distance"}
        assert client.get(f"/image_name/{image_id}").get_json() == [name]


NEAR_DUPLICATES = {
    "people/astronaut.jpg": {"imports/2024-03 Nachlass Müller/scan_0003.jpg",
                             "people/astronaut_grayscale.jpg"},
    "objects/coffee.jpg": {"imports/2024-03 Nachlass Müller/scan_0002.jpg",
                           "objects/coffee_low_quality.jpg"},
    "space/rocket.jpg": {"space/rocket_small_q50.jpg"},
    "animals/chelsea.jpg": {"imports/2024-03 Nachlass Müller/scan_0001.jpg",
                            "animals/chelsea_thumbnail.jpg"},
}


def test_an_archive_near_duplicate_is_found_first(filled):
    settings, _, _ = filled
    ids, _, _ = stored(settings)
    client = create_app(settings).test_client()
    for original, copies in NEAR_DUPLICATES.items():
        body = client.get(f"/api/v1/images/{ids[original]}/neighbours?limit=1").get_json()
        assert body["neighbours"][0]["id"] in {ids[c] for c in copies}, (original, body)


def test_a_rerun_of_both_jobs_changes_nothing(filled):
    settings, _, _ = filled
    client = create_app(settings).test_client()
    before = client.get("/image_name_and_neighbours/1").get_json()
    counts = run_features(settings, quiet=True, extractor=shared_extractor())
    assert counts["new"] == counts["changed"] == counts["failed"] == 0
    run_grouping(settings, quiet=True)
    assert create_app(settings).test_client() \
        .get("/image_name_and_neighbours/1").get_json() == before
