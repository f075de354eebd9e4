"""import_iiif.py and the feature job's HTTP fetch, against a local IIIF server."""
from __future__ import annotations

import hashlib
import json
from urllib.request import urlopen

import numpy as np
import pytest
from sqlalchemy import select

from db.engine import make_engine
from db.models import FAILED, MISSING, OK, CatalogueRecord, Image, ImageFeatures
from browser_support import gunicorn
from features_support import shared_extractor
from iiif_server_support import collection_v3, manifest_v2, manifest_v3
from jobs.catalogue.job import run as run_catalogue
import jobs.features.job as job_module
from jobs.features.job import run as run_features
from jobs.iiif_import.job import run as run_import
from numerics.vectors import decode_vector


def settings(settings_for, url, tmp_path, **more):
    empty = tmp_path / "no-files"
    empty.mkdir(exist_ok=True)
    values = {"database_url": url, "image_root": empty, "batch_size": 4,
              "iiif_fetch_timeout": 1, "iiif_fetch_retries": 1, **more}
    return settings_for(**values)


def features(settings):
    return run_features(settings, quiet=True, extractor=shared_extractor())


def rows(url) -> dict[str, dict]:
    """The images of the database by path, with their vector and catalogue record."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            images = connection.execute(select(Image)).mappings().all()
            vectors = dict(connection.execute(select(ImageFeatures.image_id,
                                                     ImageFeatures.vector)).all())
            records = {r.image_id: r for r in connection.execute(select(CatalogueRecord))}
    finally:
        engine.dispose()
    result = {}
    for row in images:
        record = records.get(row["id"])
        result[row["path"]] = {**row, "vector": vectors.get(row["id"]),
                               "title": record and record.title,
                               "url": record and record.url,
                               "extra": record and record.extra}
    return result


def publish_collection(server, groups):
    """Publish a v3 manifest, a v2 manifest and a nested collection holding a third
    manifest; `groups` are the three manifests' (canvas, image id) lists."""
    first = server.publish("/manifests/a.json", manifest_v3(
        server, "a", groups[0], label="Album A", metadata={"Creator": "Ann"}))
    second = server.publish("/manifests/b.json", manifest_v2(
        server, "b", groups[1], label="Album B", metadata={"Date": "1901"}))
    third = server.publish("/manifests/c.json", manifest_v3(server, "c", groups[2]))
    inner = server.publish("/collections/inner.json",
                           collection_v3(server, "inner", [(third, "Manifest")]))
    return server.publish("/collections/top.json", collection_v3(
        server, "top", [(first, "Manifest"), (second, "Manifest"), (inner, "Collection")]))


def test_import_reads_v2_v3_and_nested_collections(iiif_server, database_url, settings_for,
                                                   tmp_path):
    groups = [[("p1", "img00"), ("p2", "img01")], [("f1", "img02")], [("x", "img03")]]
    top = publish_collection(iiif_server, groups)
    counts = run_import(settings(settings_for, database_url, tmp_path), top)
    assert counts["manifests"] == 3 and counts["new"] == 4 and counts["problems"] == 0
    found = rows(database_url)
    service = iiif_server.service
    assert set(found) == {service(i) for i in ("img00", "img01", "img02", "img03")}
    a = found[service("img00")]
    assert a["status"] == "pending"
    assert a["source_url"] == service("img00") + "/full/max/0/default.jpg"
    assert a["manifest_id"] == iiif_server.base + "/manifests/a.json"
    assert a["canvas_id"].endswith("/canvas/p1") and a["iiif_label"] == "p1"
    assert a["title"] == "p1" and a["url"] == "https://museum.example/a"
    assert json.loads(a["extra"]) == {"Creator": "Ann"}
    b = found[service("img02")]  # v2: full/full, HTML dropped from metadata values
    assert b["source_url"] == service("img02") + "/full/full/0/default.jpg"
    assert json.loads(b["extra"]) == {"Date": "1901"}
    assert b["url"] == "https://museum.example/b"
    # The catalogue CSV wins where it has a value; the manifest fills the rest.
    csv = tmp_path / "catalogue.csv"
    csv.write_text(f"path,title,external_id\n{service('img00')},From the CSV,A-1\n",
                   encoding="utf-8")
    run_catalogue(settings(settings_for, database_url, tmp_path), csv)
    assert run_import(settings(settings_for, database_url, tmp_path), top)["unchanged"] == 4
    a = rows(database_url)[service("img00")]
    assert (a["title"], a["url"]) == ("From the CSV", "https://museum.example/a")
    assert json.loads(a["extra"]) == {"Creator": "Ann"}


def test_fetched_vectors_equal_the_files_on_disk(iiif_server, database_url, settings_for,
                                                 tmp_path):
    """Local files and IIIF images in one collection: each fetched image's vector is
    bit for bit the vector of the same file read from IMAGE_ROOT."""
    ids = sorted(iiif_server.files)
    half = len(ids) // 2
    top = publish_collection(iiif_server, [[(i, i) for i in ids[:half]],
                                           [(i, i) for i in ids[half:]], []])
    root = iiif_server.files[ids[0]].parents[1]  # sample_images
    assert root.name == "sample_images"
    # One image per model batch: with the same input the same batch shape computes the
    # same bits (across batch shapes oneDNN may round differently).
    config = settings(settings_for, database_url, tmp_path, image_root=root, batch_size=1)
    run_import(config, top)
    counts = features(config)
    assert counts["failed"] == 0 and counts["new"] == 2 * len(ids)
    found = rows(database_url)
    for image_id, path in iiif_server.files.items():
        remote = found[iiif_server.service(image_id)]
        local = found[path.relative_to(root).as_posix()]
        assert remote["status"] == local["status"] == OK
        assert remote["vector"] == local["vector"], image_id
        assert remote["content_hash"] == local["content_hash"]
        assert (remote["width"], remote["height"]) == (local["width"], local["height"])


PRESENT = ("status", "source_url", "iiif_service", "manifest_id", "canvas_id", "iiif_label",
           "content_hash", "width", "height", "title", "url", "extra")


def present(url):
    return {path: {k: row[k] for k in PRESENT} for path, row in rows(url).items()
            if row["status"] != MISSING}


def test_reimport_equals_a_fresh_import(iiif_server, two_databases, settings_for, tmp_path):
    old, fresh = two_databases
    top = publish_collection(iiif_server, [[("p1", "img00"), ("p2", "img01")],
                                           [("f1", "img02")], [("x", "img03")]])
    config = settings(settings_for, old, tmp_path)
    run_import(config, top)
    features(config)
    before = rows(old)
    # Added canvases (img04, img05), one removed (img01), one canvas now showing
    # another image (f1: img02 -> img06), and one image changed at the server (img03).
    publish_collection(iiif_server, [[("p1", "img00"), ("p3", "img04")],
                                     [("f1", "img06"), ("f2", "img05")], [("x", "img03")]])
    iiif_server.state.images["img03"] = iiif_server.state.images["img07"]
    dry = run_import(config, top, dry_run=True)
    assert rows(old) == before
    counts = run_import(config, top)
    assert dry == counts
    assert (counts["new"], counts["missing"]) == (3, 2)
    features(config)
    run_import(settings(settings_for, fresh, tmp_path), top)
    features(settings(settings_for, fresh, tmp_path))
    a, b = present(old), present(fresh)
    assert a.keys() == b.keys()
    assert {(p, k) for p in a for k in PRESENT if a[p][k] != b[p][k]} == set()
    # Batches fall differently in the two histories; oneDNN may round differently.
    for path, row in rows(old).items():
        if path in b:
            np.testing.assert_allclose(decode_vector(row["vector"]),
                                       decode_vector(rows(fresh)[path]["vector"]),
                                       rtol=1e-4, atol=1e-4)
    after = rows(old)
    service = iiif_server.service
    assert after[service("img01")]["status"] == MISSING
    assert after[service("img02")]["status"] == MISSING
    assert after[service("img00")]["id"] == before[service("img00")]["id"]
    assert after[service("img03")]["content_hash"] != before[service("img03")]["content_hash"]
    assert after[service("img03")]["vector"] != before[service("img03")]["vector"]
    # A removed canvas that comes back keeps its id and is computed again.
    publish_collection(iiif_server, [[("p1", "img00"), ("p2", "img01")], [], []])
    assert run_import(config, top)["reappeared"] == 1
    features(config)
    back = rows(old)[service("img01")]
    assert back["id"] == before[service("img01")]["id"] and back["status"] == OK
    np.testing.assert_allclose(decode_vector(back["vector"]),
                               decode_vector(before[service("img01")]["vector"]),
                               rtol=1e-4, atol=1e-4)


def test_failures_are_recorded_and_retried(iiif_server, database_url, settings_for,
                                           tmp_path, monkeypatch):
    state = iiif_server.state
    faults = {"img00": "404", "img01": "403", "img02": "429", "img03": "500",
              "img04": "slow", "img05": "truncated", "img06": "html"}
    state.faults.update(faults)
    state.slow_for = 2.5  # past IIIF_FETCH_TIMEOUT=1
    good = ["img07", "img08"]
    top = publish_collection(iiif_server, [[(i, i) for i in list(faults)[:4]],
                                           [(i, i) for i in list(faults)[4:]],
                                           [(i, i) for i in good]])
    config = settings(settings_for, database_url, tmp_path)
    run_import(config, top)
    counts = features(config)
    assert counts["failed"] == len(faults)
    found = rows(database_url)
    errors = {i: found[iiif_server.service(i)]["error"] for i in faults}
    assert all(found[iiif_server.service(i)]["status"] == FAILED for i in faults)
    assert errors["img00"].startswith("HTTP 404")
    assert errors["img01"].startswith("HTTP 403")
    assert errors["img02"].startswith("HTTP 429")
    assert errors["img03"].startswith("HTTP 500")
    assert "timed out" in errors["img04"] or "Timeout" in errors["img04"]
    assert "cut short" in errors["img05"]
    assert errors["img06"].startswith("not a JPEG image (text/html")
    assert all(found[iiif_server.service(i)]["status"] == OK for i in good)
    # 429 and 500 were retried once; the 429 retry waited for its Retry-After (1 s).
    tries = [r for r in state.image_requests() if "/img02/" in r.path]
    assert len(tries) == 2 and tries[1].at - tries[0].at >= 1.0
    assert len([r for r in state.image_requests() if "/img03/" in r.path]) == 2
    # The server fixed: the next run completes the rest.
    state.faults.clear()
    state.clear_log()
    counts = features(config)
    assert counts["retried"] == len(faults) and counts["failed"] == 0
    assert all(row["status"] == OK for row in rows(database_url).values())
    # Nothing changed: only conditional requests, answered 304, no image bytes, and the
    # job, left to load the model itself, never needs it.
    state.clear_log()
    loads = []
    real_load = job_module._load_extractor
    monkeypatch.setattr(job_module, "_load_extractor",
                        lambda *args: loads.append(args) or real_load(*args))
    counts = run_features(config, quiet=True)
    assert loads == []
    requests = state.image_requests()
    assert len(requests) == len(faults) + len(good)
    assert all(r.conditional and r.status == 304 and r.body_bytes == 0 for r in requests)
    assert counts["unchanged"] == len(faults) + len(good)


def test_credentials_are_sent_and_never_logged(iiif_server, sqlite_url, settings_for,
                                               tmp_path, caplog):
    state = iiif_server.state
    top = publish_collection(iiif_server, [[("p1", "img00"), ("p2", "img01")], [], []])
    config = settings(settings_for, sqlite_url, tmp_path, iiif_basic_auth="ann:s3cret")
    state.faults["img01"] = "500"
    caplog.set_level("DEBUG")
    run_import(config, top)
    features(config)
    assert {r.authorization for r in state.log} == {"Basic YW5uOnMzY3JldA=="}
    found = rows(sqlite_url)
    assert found[iiif_server.service("img01")]["error"].startswith("HTTP 500")
    everything = caplog.text + repr(config) + json.dumps(
        [row["error"] for row in found.values()])
    assert "s3cret" not in everything and "YW5uOnMzY3JldA" not in everything
    state.log.clear()
    token = settings(settings_for, sqlite_url, tmp_path, iiif_basic_auth="ann:s3cret",
                     iiif_bearer_token="t0ken")
    run_import(token, top)
    assert {r.authorization for r in state.log} == {"Bearer t0ken"}
    assert "t0ken" not in repr(token)


def test_not_a_manifest_is_a_clear_error(iiif_server, sqlite_url, settings_for, tmp_path):
    from runtime.jobrun import JobError
    url = iiif_server.publish("/manifests/odd.json", {"hello": "world"})
    with pytest.raises(JobError, match="neither a IIIF manifest nor a collection"):
        run_import(settings(settings_for, sqlite_url, tmp_path), url)
    with pytest.raises(JobError, match="HTTP 404"):
        run_import(settings(settings_for, sqlite_url, tmp_path), iiif_server.base + "/nope")


def _fetchers_here() -> int:
    from jobs.features.cluster import _loaded
    from runtime.fetch import Fetcher
    return sum(isinstance(value, Fetcher) for value in _loaded.values())


def test_the_dask_workers_fetch(iiif_server, sqlite_url, settings_for, tmp_path,
                                dask_client):
    ids = sorted(iiif_server.files)[:6]
    top = publish_collection(iiif_server, [[(i, i) for i in ids], [], []])
    config = settings(settings_for, sqlite_url, tmp_path)
    run_import(config, top)
    counts = run_features(config, quiet=True, scheduler=dask_client, partition_size=2)
    assert counts["new"] == len(ids) and counts["failed"] == 0
    # The workers fetched: they built their own connection pools.
    assert sum(dask_client.run(_fetchers_here).values()) >= 1
    found = rows(sqlite_url)
    for image_id in ids:
        row = found[iiif_server.service(image_id)]
        assert row["status"] == OK
        assert row["content_hash"] == hashlib.sha256(
            iiif_server.files[image_id].read_bytes()).hexdigest()


def test_fetching_through_this_projects_own_iiif_endpoint(iiif_server, database_url,
                                                          settings_for, tmp_path):
    """A second archive takes the first one's images through its /iiif/3/<id> service.
    That endpoint re-encodes the JPEG, so the vectors are close, not equal: each fetched
    image's nearest vector in the first archive is its own file's."""
    root = next(iter(iiif_server.files.values())).parents[1]
    first_url = f"sqlite:///{tmp_path / 'first.sqlite3'}"
    first = settings(settings_for, first_url, tmp_path, image_root=root)
    features(first)
    disk = {row["id"]: row for row in rows(first_url).values()}
    with gunicorn({"DATABASE_URL": first_url, "IMAGE_ROOT": str(root),
                   "THUMBNAIL_CACHE": str(tmp_path / "thumbnails"),
                   "LOG_LEVEL": "WARNING"}) as base:
        top = iiif_server.publish("/manifests/ours.json", manifest_v3(
            iiif_server, "ours", [(str(i), str(i)) for i in disk],
            service=lambda image: f"{base}/iiif/3/{image}"))
        second = settings(settings_for, database_url, tmp_path)
        run_import(second, top)
        counts = features(second)
        assert counts["new"] == len(disk) and counts["failed"] == 0
        again = features(second)  # the endpoint's ETags: nothing fetched again
        assert again["unchanged"] == len(disk)
        fetched = {int(path.rpartition("/")[2]): row for path, row in rows(database_url).items()}
        ids = sorted(disk)
        matrix = np.stack([decode_vector(disk[i]["vector"]) for i in ids])
        for image_id, row in fetched.items():
            with urlopen(row["source_url"]) as response:  # an independent fetch
                assert hashlib.sha256(response.read()).hexdigest() == row["content_hash"]
            assert (row["width"], row["height"]) == (disk[image_id]["width"],
                                                     disk[image_id]["height"])
            distances = np.linalg.norm(matrix - decode_vector(row["vector"]), axis=1)
            assert ids[int(np.argmin(distances))] == image_id
