"""Search by an uploaded image, on both databases: the real feature and grouping jobs over
the sample images (and enough seeded vectors for the whitened space to be learned), then
POST /api/v1/search checked against a float64 brute force over the stored vectors."""
from __future__ import annotations

import io
import os
import re
import threading
from datetime import datetime

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import delete, insert, select

from db.engine import make_engine
from db.models import OK, WHITENED, CatalogueRecord, Image, ImageFeatures, Space
from numerics.vectors import DIMENSIONS, decode_vector
from features_support import ROOT
from jobs.grouping.run import run as run_grouping
from service import create_app
import oracle

SAMPLES = ROOT / "sample_images"


def stored(url: str):
    """Return {path: id}, the ok ids and their vectors, read with plain SQL."""
    engine = make_engine(url)
    with engine.connect() as connection:
        paths = dict(connection.execute(select(Image.path, Image.id)).all())
        rows = connection.execute(
            select(ImageFeatures.image_id, ImageFeatures.vector)
            .join(Image, Image.id == ImageFeatures.image_id).where(Image.status == OK)
            .order_by(ImageFeatures.image_id)).all()
        projection = connection.execute(select(Space.projection)
                                         .where(Space.name == WHITENED)).scalar()
    engine.dispose()
    ids = np.array([r[0] for r in rows])
    vectors = np.stack([decode_vector(r[1]) for r in rows]).astype(np.float64)
    return paths, ids, vectors, projection


def whiten64(vectors: np.ndarray, projection: bytes) -> np.ndarray:
    """The whitened space in float64, from the stored arrays (numerics/whitening.py's
    definition, written out again): L2(((L2(ssqrt(x)) − mean) · components) / scales)."""
    with np.load(io.BytesIO(projection), allow_pickle=False) as arrays:
        mean, components, scales = arrays["mean"], arrays["components"], arrays["scales"]
    roots = np.sign(vectors) * np.sqrt(np.abs(vectors))
    roots /= np.linalg.norm(roots, axis=1, keepdims=True)
    out = ((roots - mean) @ components) / scales
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def brute_force(query: np.ndarray, ids: np.ndarray, base: np.ndarray, k: int):
    (found, distances), = oracle.nearest(query, base, ids, k)
    return [int(i) for i in found], [float(d) for d in distances]


def post(client, data: bytes, content_type="image/jpeg", query=""):
    return client.post(f"/api/v1/search{query}", data=data, content_type=content_type)


@pytest.mark.parametrize("space", ["pool3", "augmented"])
def test_every_sample_image_uploaded_finds_itself_first(search_collection, space):
    # In the augmented space the upload is augmented with its own nearest, the stored
    # image with its nearest others: close, not equal.
    settings, app = search_collection
    paths, _, _, _ = stored(settings.database_url)
    client = app.test_client()
    for path in sorted(SAMPLES.rglob("*.jpg")):
        relative = path.relative_to(SAMPLES).as_posix()
        response = post(client, path.read_bytes(), query=f"?limit=3&space={space}")
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["space"] == space
        first, second = response.get_json()["neighbours"][:2]
        assert first["id"] == paths[relative], relative
        assert first["distance"] < (1e-3 if space == "pool3" else second["distance"]), \
            (relative, first)
        assert first["links"]["page"].endswith(f"/images/{paths[relative]}")


def augment64(whitened: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int,
              alpha: float, own_ids=None) -> np.ndarray:
    """DBA in float64 (numerics/augmentation.py's definition, written out again): each
    query with its k nearest of the whitened base, weighted by cosine to the α."""
    out = []
    for query, (found, _) in zip(queries, oracle.nearest(queries, whitened, ids, k,
                                                         own_ids)):
        total = query.copy()
        for neighbour in whitened[np.searchsorted(ids, found)]:
            total += max(query @ neighbour, 0.0) ** alpha * neighbour
        out.append(total / np.linalg.norm(total))
    return np.array(out)


@pytest.mark.parametrize("space", ["pool3", "whitened", "augmented"])
def test_answer_equals_a_float64_brute_force_over_the_stored_vectors(search_collection,
                                                                     space):
    settings, app = search_collection
    _, ids, vectors, projection = stored(settings.database_url)
    assert projection is not None, "the whitened space was not learned"
    base = vectors if space == "pool3" else whiten64(vectors, projection)
    k, alpha = settings.augmented_k, settings.augmented_alpha
    whitened = base
    if space == "augmented":
        base = augment64(whitened, ids, whitened, k, alpha, ids)
    client = app.test_client()
    uploads = sorted(SAMPLES.rglob("*.jpg"))[::5]
    # A new picture, not in the archive, as PNG.
    buffer = io.BytesIO()
    PILImage.open(uploads[0]).rotate(90, expand=True).save(buffer, "PNG")
    for data, kind in [(p.read_bytes(), "image/jpeg") for p in uploads] + [
            (buffer.getvalue(), "image/png")]:
        response = post(client, data, kind, f"?limit=100&features=1&space={space}")
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["space"] == space and len(body["neighbours"]) == 100
        query = np.array(body["query"]["features"], dtype=np.float32)
        assert query.shape == (DIMENSIONS,)
        query = query.astype(np.float64)[np.newaxis]
        if space != "pool3":
            query = whiten64(query, projection)
        if space == "augmented":
            query = augment64(whitened, ids, query, k, alpha)
        want_ids, want_distances = brute_force(query[0], ids, base, 100)
        got = body["neighbours"]
        assert [n["rank"] for n in got] == list(range(1, 101))
        assert [n["id"] for n in got] == want_ids
        np.testing.assert_allclose([n["distance"] for n in got], want_distances,
                                   rtol=1e-5 if space != "pool3" else 1e-6, atol=1e-7)


def test_results_carry_the_catalogue_fields_and_iiif_links(search_collection):
    settings, app = search_collection
    paths, _, _, _ = stored(settings.database_url)
    rocket = paths["space/rocket.jpg"]
    engine = make_engine(settings.database_url)
    with engine.begin() as connection:
        connection.execute(insert(CatalogueRecord).values(
            image_id=rocket, external_id="R-1", title="Rakete (Ünter Wolken)",
            excluded=False, updated_at=datetime(2026, 1, 1)))
    try:
        data = (SAMPLES / "space" / "rocket.jpg").read_bytes()
        got = post(app.test_client(), data, query="?limit=5").get_json()["neighbours"]
    finally:
        with engine.begin() as connection:
            connection.execute(delete(CatalogueRecord)
                               .where(CatalogueRecord.image_id == rocket))
        engine.dispose()
    assert (got[0]["id"], got[0]["external_id"], got[0]["title"]) == \
        (rocket, "R-1", "Rakete (Ünter Wolken)")
    assert all(n["external_id"] is None and n["title"] is None for n in got[1:])
    assert [n["links"]["iiif"] for n in got] == [f"/iiif/3/{n['id']}" for n in got]


def test_the_query_features_are_those_the_feature_job_stored(search_collection):
    settings, app = search_collection
    paths, ids, vectors, _ = stored(settings.database_url)
    path = SAMPLES / "space" / "rocket.jpg"
    body = post(app.test_client(), path.read_bytes(), query="?features=1").get_json()
    mine = vectors[list(ids).index(paths["space/rocket.jpg"])]
    np.testing.assert_allclose(body["query"]["features"], mine, rtol=1e-4, atol=1e-5)


def test_multipart_upload_and_png_variants_work(search_collection):
    _, app = search_collection
    client = app.test_client()
    photo = PILImage.open(SAMPLES / "animals" / "chelsea.jpg").convert("RGB")
    variants = {"grayscale": photo.convert("L"), "palette": photo.convert("P"),
                "rgba": photo.convert("RGBA"),
                "16-bit": PILImage.fromarray(
                    np.asarray(photo.convert("L"), dtype=np.uint16) * 257)}
    first = None
    for name, picture in variants.items():
        buffer = io.BytesIO()
        picture.save(buffer, "PNG")
        if name == "16-bit":
            assert buffer.getvalue()[24] == 16  # IHDR bit depth
        response = client.post("/api/v1/search?limit=1", content_type="multipart/form-data",
                               data={"image": (io.BytesIO(buffer.getvalue()), "x.png")})
        assert response.status_code == 200, (name, response.get_json())
        body = response.get_json()
        assert body["query"]["format"] == "PNG" and body["query"]["width"] == photo.width
        first = first or body["neighbours"][0]["id"]
    cmyk = io.BytesIO()
    photo.convert("CMYK").save(cmyk, "JPEG", quality=95)
    response = post(client, cmyk.getvalue(), query="?limit=1")
    assert response.status_code == 200
    assert response.get_json()["query"]["format"] == "JPEG"


def _bad_uploads():
    good = (SAMPLES / "space" / "rocket.jpg").read_bytes()
    gif = io.BytesIO()
    PILImage.new("RGB", (8, 8)).save(gif, "GIF")
    png = io.BytesIO()
    PILImage.new("RGB", (64, 64), "red").save(png, "PNG")
    bomb = io.BytesIO()
    PILImage.new("L", (5000, 5000)).save(bomb, "PNG")
    return {
        "empty body": (b"", "image/jpeg", 400, "empty"),
        "empty, no type": (b"", None, 400, "empty"),
        "not an image": (b"hello, this is text", "image/jpeg", 400, "not a JPEG or PNG"),
        "truncated JPEG": (good[:len(good) // 2], "image/jpeg", 400, "truncated"),
        "corrupt JPEG": (good[:600] + bytes(range(256)) * 40 + good[-2:], "image/jpeg",
                         400, "corrupt"),
        "truncated PNG": (png.getvalue()[:60], "image/png", 400, "PNG"),
        "pixel bomb": (bomb.getvalue(), "image/png", 413, "too many pixels"),
        "GIF": (gif.getvalue(), "image/png", 415, "GIF"),
        "type gif": (good, "image/gif", 415, "unsupported content type"),
        "type text": (good, "text/plain", 415, "unsupported content type"),
        "over size cap": (good + b"\0" * (1024 * 1024), "image/jpeg", 413, ""),
    }


@pytest.mark.parametrize("name", list(_bad_uploads()))
def test_bad_uploads_get_a_json_4xx(search_collection, name, tmp_path):
    settings, _ = search_collection
    app = create_app(settings.replace(max_image_pixels=20_000_000, search_max_upload_mb=1))
    data, kind, status, words = _bad_uploads()[name]
    client = app.test_client()
    response = (client.post("/api/v1/search", data=data) if kind is None
                else post(client, data, kind))
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/json"
    assert words.lower() in response.get_json()["error"].lower()
    app.extensions["db_engine"].dispose()


def test_bad_parameters_and_form_field(search_collection):
    _, app = search_collection
    client = app.test_client()
    good = (SAMPLES / "space" / "rocket.jpg").read_bytes()
    for query in ("?limit=0", "?limit=101", "?limit=x", "?space=nope", "?features=2"):
        response = post(client, good, query=query)
        assert response.status_code == 400, query
        assert "error" in response.get_json()
    response = client.post("/api/v1/search", content_type="multipart/form-data",
                           data={"picture": (io.BytesIO(good), "a.jpg")})
    assert response.status_code == 400 and "'image'" in response.get_json()["error"]
    assert client.get("/api/v1/search").status_code == 405


def test_a_full_concurrency_bound_answers_503_with_retry_after(search_collection):
    settings, app = search_collection
    client = app.test_client()
    good = (SAMPLES / "space" / "rocket.jpg").read_bytes()
    slots = app.extensions["search_slots"]
    held = [slots.acquire() for _ in range(settings.search_concurrency)]
    for slot in held:
        slot.__enter__()
    try:
        response = post(client, good)
        assert response.status_code == 503
        assert response.headers["Retry-After"].isdigit()
        assert "busy" in response.get_json()["error"]
        # Neighbour endpoints are not bound by it.
        assert client.get("/api/v1/images/1/neighbours").status_code == 200
    finally:
        for slot in held:
            slot.__exit__(None, None, None)
    assert post(client, good).status_code == 200


def test_searches_from_threads_agree_and_the_store_loads_once(search_collection):
    settings, app = search_collection
    good = (SAMPLES / "space" / "rocket.jpg").read_bytes()
    store = app.extensions["search_store"]
    client = app.test_client()
    first = post(client, good).get_json()
    loaded = store.loaded
    answers, statuses = [], []

    def worker():
        response = app.test_client().post("/api/v1/search", data=good,
                                          content_type="image/jpeg")
        statuses.append(response.status_code)
        if response.status_code == 200:
            answers.append(response.get_json()["neighbours"])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(statuses) <= {200, 503} and 200 in statuses
    assert all(answer == first["neighbours"] for answer in answers)
    assert store.loaded is loaded  # later searches did not load again


def test_a_newer_completed_grouping_run_replaces_the_files(search_collection, tmp_path):
    settings, app = search_collection
    client = app.test_client()
    good = (SAMPLES / "space" / "rocket.jpg").read_bytes()
    before = post(client, good).get_json()["grouping_run"]
    store = app.extensions["search_store"]
    run_grouping(settings, quiet=True, full=True)
    after = post(client, good).get_json()["grouping_run"]
    assert after > before
    assert sorted(p.name for p in store.folder.glob("run-*")) == [f"run-{after}"]


def test_the_page_searches_with_a_plain_form_post(search_collection):
    settings, app = search_collection
    paths, _, _, _ = stored(settings.database_url)
    client = app.test_client()
    form = client.get("/search-by-image")
    assert form.status_code == 200
    page = form.get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in page and 'name="image"' in page
    assert 'id="search-by-image-link"' in client.get("/").get_data(as_text=True)
    data = (SAMPLES / "objects" / "coffee.jpg").read_bytes()
    response = client.post("/search-by-image", content_type="multipart/form-data",
                           data={"image": (io.BytesIO(data), "coffee.jpg"),
                                 "space": "pool3"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'id="neighbour-grid"' in html
    own = paths["objects/coffee.jpg"]
    assert html.index(f'href="/images/{own}?space=pool3"') < html.index('class="rank">2<')
    assert 'src="data:image/jpeg;base64,' in html  # the query beside the results
    # The camera's field comes first and is empty when a file was chosen instead.
    both = client.post("/search-by-image", content_type="multipart/form-data",
                       data={"image": [(io.BytesIO(b""), ""), (io.BytesIO(data), "coffee.jpg")],
                             "space": "pool3"})
    assert both.status_code == 200
    assert f'href="/images/{own}?space=pool3"' in both.get_data(as_text=True)
    bad = client.post("/search-by-image", content_type="multipart/form-data",
                      data={"image": (io.BytesIO(b"not an image"), "x.jpg")})
    assert bad.status_code == 400 and bad.mimetype == "text/html"
    assert "not a JPEG or PNG" in bad.get_data(as_text=True)


def test_automatic_search_bounds_leave_half_the_cores_to_the_other_endpoints():
    from runtime.settings import search_bounds
    # (cores) -> (concurrency, threads): concurrency × threads ≤ max(1, cores / 2).
    assert search_bounds(0, 0, cores=1) == (1, 1)
    assert search_bounds(0, 0, cores=2) == (1, 1)
    assert search_bounds(0, 0, cores=4) == (1, 2)
    assert search_bounds(0, 0, cores=16) == (4, 2)
    assert search_bounds(3, 0, cores=16) == (3, 2)
    assert search_bounds(2, 5, cores=2) == (2, 5)  # explicit values are kept


def test_each_gunicorn_worker_loads_the_model_once_in_the_background(tmp_path):
    """With --preload too: the master makes the app and forks; it must not load the
    model (a fork would catch TensorFlow half imported), each worker loads its own."""
    import re
    import subprocess
    import sys
    import time
    from pathlib import Path
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}",
           "SEARCH_CACHE": str(tmp_path / "search"), "LOG_LEVEL": "INFO",
           "THUMBNAIL_CACHE": str(tmp_path / "thumbnails"), "SEARCH_PRELOAD": "1"}
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "--preload", "--workers", "2",
         "--bind", "127.0.0.1:0", "--no-control-socket", "service:create_app()"],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    lines, loaded = [], {}
    deadline = time.monotonic() + 300
    try:
        while len(loaded) < 2 and time.monotonic() < deadline:
            line = process.stderr.readline()
            lines.append(line)
            found = re.search(r"search model loaded in [\d.]+ s \(process (\d+)\)", line)
            if found:
                loaded[int(found[1])] = loaded.get(int(found[1]), 0) + 1
    finally:
        process.terminate()
        process.communicate(timeout=30)
    workers = {int(p) for p in re.findall(r"Booting worker with pid: (\d+)", "".join(lines))}
    assert loaded == {pid: 1 for pid in workers} and len(workers) == 2, "".join(lines)[-3000:]
    assert "could not be loaded" not in "".join(lines)


@pytest.mark.parametrize("page_space, first", [("best", "augmented"),
                                               ("whitened", "whitened"),
                                               ("pool3", "pool3")])
def test_the_image_page_shows_the_improved_space_first(search_collection, page_space,
                                                        first):
    settings, _ = search_collection
    paths, _, _, _ = stored(settings.database_url)
    app = create_app(settings.replace(page_space=page_space))
    client = app.test_client()
    spaces = {s["name"]: s for s in client.get("/api/v1/spaces").get_json()["spaces"]}
    assert spaces["augmented"]["computed"]
    assert spaces["augmented"]["dimensions"] == spaces["whitened"]["dimensions"]
    image_id = paths["space/rocket.jpg"]
    html = client.get(f"/images/{image_id}").get_data(as_text=True)
    assert re.search(rf'id="space-{first}" href="[^"]*"\s+title="[^"]*" aria-current="page"'
                     r'>([^<]*)<', html)
    # The API's neighbours in the space are its stored lists.
    body = client.get(f"/api/v1/images/{image_id}/neighbours?space=augmented").get_json()
    assert body["space"] == "augmented" and body["neighbours"]
    app.extensions["db_engine"].dispose()


def test_the_augmented_space_has_its_own_words_and_duplicates_default(search_collection):
    from runtime import distances
    settings, app = search_collection
    client = app.test_client()
    scale = distances.SCALES["augmented"]
    far = "start=1000000"  # no group shown: only the default is read
    body = client.get(f"/api/v1/duplicates?space=augmented&{far}").get_json()
    assert body["max_distance"] == scale.near_duplicate
    html = client.get(f"/duplicates?space=augmented&{far}").get_data(as_text=True)
    assert '<option value="augmented" selected>Refined</option>' in html
    # The neighbours' cards say the words of the augmented scale, the number on hover.
    paths, _, _, _ = stored(settings.database_url)
    html = client.get(f"/images/{paths['space/rocket.jpg']}?space=augmented").get_data(
        as_text=True)
    shown = re.findall(r'title="distance ([^ "]+) \(Refined similarity\)">([^<]+)<', html)
    assert shown and all(text == scale.word(float(number)) for number, text in shown)
