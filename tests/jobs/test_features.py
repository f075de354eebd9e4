"""The feature job end to end with the real model, on SQLite and MariaDB."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update

from db.engine import make_engine, upgrade
from db.locks import run_lock
from db.models import Image, ImageFeatures, Job
from numerics.vectors import MODEL_NAME
from jobs.features.job import JobError, run as run_features
from features_support import ROOT, feature_rows, image_rows, write_jpeg
from model.preprocess import load_image


def clear_needs_grouping(url):
    """Do what the grouping job does after rewriting the lists."""
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(update(Image).values(needs_grouping=False))
    engine.dispose()


def last_job(url):
    engine = make_engine(url)
    with engine.connect() as connection:
        row = connection.execute(select(Job).order_by(Job.id.desc()).limit(1)).one()
    engine.dispose()
    return row


def test_fresh_run_then_a_rerun_that_does_nothing(job, extractor):
    write_jpeg(job.root / "a.jpg", 1)
    write_jpeg(job.root / "sub" / "B.JPG", 2, width=120, height=80)
    write_jpeg(job.root / "sub" / "deeper" / "c.jpeg", 3)
    (job.root / "readme.txt").write_text("not an image")
    counts = job()
    assert counts["new"] == 3 and counts["failed"] == 0 and counts["unchanged"] == 0
    rows = image_rows(job.url)
    assert sorted(rows) == ["a.jpg", "sub/B.JPG", "sub/deeper/c.jpeg"]
    b = rows["sub/B.JPG"]
    assert (b["status"], b["width"], b["height"], b["file_name"]) == ("ok", 120, 80, "B.JPG")
    assert b["size"] == os.path.getsize(job.root / "sub/B.JPG")
    assert b["needs_grouping"]
    features = feature_rows(job.url)
    assert set(features) == {row["id"] for row in rows.values()}
    # The stored vector is the model's output for that file (batching aside).
    array, _, _ = load_image((job.root / "sub/B.JPG").read_bytes(), 10**8)
    expected = extractor(array[np.newaxis])[0]
    stored = np.frombuffer(features[b["id"]]["vector"], "<f4")
    np.testing.assert_allclose(stored, expected, rtol=1e-4, atol=1e-4)
    assert features[b["id"]]["model"] == extractor.name
    finished = last_job(job.url)
    assert finished.outcome == "completed" and finished.kind == "features"
    assert finished.counts == counts

    clear_needs_grouping(job.url)
    before_rows, before_features = image_rows(job.url), feature_rows(job.url)
    again = job()
    assert again["unchanged"] == 3
    assert sum(again.values()) == 3
    assert image_rows(job.url) == before_rows  # not even updated_at moved
    assert feature_rows(job.url) == before_features


def test_add_change_touch_remove_then_reappear(job):
    for name, seed in [("keep.jpg", 1), ("change.jpg", 2), ("touch.jpg", 3), ("gone.jpg", 4)]:
        write_jpeg(job.root / name, seed)
    job()
    clear_needs_grouping(job.url)
    first, first_features = image_rows(job.url), feature_rows(job.url)

    write_jpeg(job.root / "new.jpg", 5)
    write_jpeg(job.root / "change.jpg", 6)  # new content
    os.utime(job.root / "touch.jpg", ns=(1, 1_000_000_000))  # new mtime, same content
    gone = job.root / "gone.jpg"
    saved = gone.read_bytes(), gone.stat().st_mtime_ns
    gone.unlink()
    counts = job()
    assert {k: v for k, v in counts.items() if v} == {
        "new": 1, "changed": 1, "unchanged": 2, "missing": 1}
    rows, features = image_rows(job.url), feature_rows(job.url)
    for name in first:  # stable ids
        assert rows[name]["id"] == first[name]["id"]
    assert rows["new.jpg"]["id"] > max(r["id"] for r in first.values())
    change_id, touch_id, gone_id = (first[n]["id"] for n in ("change.jpg", "touch.jpg",
                                                             "gone.jpg"))
    assert features[change_id]["vector"] != first_features[change_id]["vector"]
    assert rows["change.jpg"]["needs_grouping"] and rows["new.jpg"]["needs_grouping"]
    # Touched: only the recorded mtime follows the file; nothing recomputed.
    assert features[touch_id] == first_features[touch_id]
    assert rows["touch.jpg"]["mtime_ns"] == 1_000_000_000
    assert not rows["touch.jpg"]["needs_grouping"] and not rows["keep.jpg"]["needs_grouping"]
    # Gone: kept with its features, out of the grouping.
    assert rows["gone.jpg"]["status"] == "missing" and rows["gone.jpg"]["needs_grouping"]
    assert features[gone_id] == first_features[gone_id]

    clear_needs_grouping(job.url)
    gone.write_bytes(saved[0])
    os.utime(gone, ns=(saved[1], saved[1]))
    counts = job()
    assert counts["reappeared"] == 1 and counts["unchanged"] == 4
    rows = image_rows(job.url)
    assert rows["gone.jpg"]["id"] == gone_id
    assert rows["gone.jpg"]["status"] == "ok" and rows["gone.jpg"]["needs_grouping"]
    assert feature_rows(job.url)[gone_id] == first_features[gone_id]  # not recomputed
    assert job()["unchanged"] == 5


def test_limit_defers_work_and_dry_run_changes_nothing(job, settings_for):
    for i in range(5):
        write_jpeg(job.root / f"{i}.jpg", i)
    dry = job(dry_run=True)
    assert dry["new"] == 5 and dry["missing"] == 0
    if job.url.startswith("sqlite"):
        assert not Path(job.url.removeprefix("sqlite:///")).exists()
    else:
        from sqlalchemy import inspect
        engine = make_engine(job.url)
        assert inspect(engine).get_table_names() == []  # not even migrated
        engine.dispose()

    counts = job(limit=2)
    assert (counts["new"], counts["deferred"]) == (2, 3)
    assert sorted(image_rows(job.url)) == ["0.jpg", "1.jpg"]
    (job.root / "0.jpg").unlink()
    dry = job(dry_run=True)
    assert (dry["new"], dry["unchanged"], dry["missing"]) == (3, 1, 1)
    assert image_rows(job.url)["0.jpg"]["status"] == "ok"  # the dry run changed nothing
    counts = job()
    assert (counts["new"], counts["missing"], counts["deferred"]) == (3, 1, 0)


def test_failed_files_are_retried_only_when_changed_or_asked(job):
    bad = job.root / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really")
    write_jpeg(job.root / "good.jpg", 1)
    counts = job()
    assert (counts["new"], counts["failed"]) == (2, 1)
    row = image_rows(job.url)["bad.jpg"]
    assert row["status"] == "failed" and row["error"]
    bad_id = row["id"]
    assert job()["unchanged"] == 2
    counts = job(retry_failed=True)
    assert (counts["retried"], counts["failed"], counts["unchanged"]) == (1, 1, 1)
    write_jpeg(bad, 7)  # repaired
    counts = job()
    assert (counts["changed"], counts["failed"]) == (1, 0)
    row = image_rows(job.url)["bad.jpg"]
    assert (row["status"], row["error"], row["id"]) == ("ok", None, bad_id)
    assert row["needs_grouping"]


def test_an_emptied_image_root_marks_nothing_missing(job):
    write_jpeg(job.root / "a.jpg", 1)
    write_jpeg(job.root / "sub" / "b.jpg", 2)
    job()
    before = image_rows(job.url)
    for path in (job.root / "a.jpg", job.root / "sub" / "b.jpg"):
        path.unlink()
    with pytest.raises(JobError, match="holds no JPEG files.*2 present images"):
        job()
    assert image_rows(job.url) == before
    assert last_job(job.url).outcome == "failed"

    write_jpeg(job.root / "c.jpg", 3)  # a folder with some files is taken as it is
    counts = job()
    assert (counts["new"], counts["missing"]) == (1, 2)


def test_a_second_run_waits_for_no_one_and_changes_nothing(job):
    write_jpeg(job.root / "a.jpg", 1)
    engine = make_engine(job.url)
    upgrade(engine)
    with run_lock(engine, "features"):  # a first run still working
        with pytest.raises(JobError, match="another create_image_features.py run"):
            job()
        assert image_rows(job.url) == {}
    assert job()["new"] == 1  # the lock went with the first run
    engine.dispose()


def test_vectors_of_an_earlier_decoding_are_recomputed_run_by_run(job):
    for name, seed in [("a.jpg", 1), ("b.jpg", 2), ("c.jpg", 3), ("d.jpg", 4)]:
        write_jpeg(job.root / name, seed)
    job()
    clear_needs_grouping(job.url)
    fresh, ids = feature_rows(job.url), {p: r["id"] for p, r in image_rows(job.url).items()}
    # A database of the version before the fix: every vector made with the old decoding.
    engine = make_engine(job.url)
    with engine.begin() as connection:
        connection.execute(update(ImageFeatures).values(
            model="inception_v3_2015_12_05_pool_3", vector=bytes(8192)))
    engine.dispose()
    os.utime(job.root / "d.jpg", ns=(1, 1_000_000_000))  # touched: same content

    counts = job(limit=2)
    assert (counts["recomputed"], counts["deferred"]) == (2, 2)
    assert "2 still to do" in counts["note"] and "ISLOW" in counts["note"]
    rows, features = image_rows(job.url), feature_rows(job.url)
    assert {p: r["id"] for p, r in rows.items()} == ids  # no new ids
    done = [p for p, r in rows.items() if features[r["id"]]["model"] == MODEL_NAME]
    assert sorted(done) == ["a.jpg", "b.jpg"]  # in walk order, as other work
    for path in done:
        assert features[ids[path]]["vector"] == fresh[ids[path]]["vector"]
        assert rows[path]["needs_grouping"]
    assert not rows["c.jpg"]["needs_grouping"]

    counts = job()
    # The touched file has the content on record, but its vector is not kept.
    assert (counts["recomputed"], counts["changed"], counts["unchanged"]) == (1, 1, 2)
    assert "none left" in counts["note"]
    features = feature_rows(job.url)
    assert {i: (f["model"], f["vector"]) for i, f in features.items()} == {
        i: (MODEL_NAME, f["vector"]) for i, f in fresh.items()}
    again = job()
    assert again["unchanged"] == 4 and "note" not in again


def test_scanned_paths_are_found_over_the_api_whatever_their_bytes(job, settings_for):
    """One path hash for the scan and the look-up: a name that is not UTF-8 (Latin-1
    bytes) and one with non-ASCII letters, stored by the real job, found by their text."""
    from service import create_app
    latin1 = os.fsencode(job.root) + b"/caf\xe9/Stra\xdfe 1.jpg"
    write_jpeg(latin1, 1)
    write_jpeg(job.root / "Ærø" / "Ångström ñ 2.jpg", 2)
    job()
    client = create_app(settings_for(database_url=job.url, image_root=job.root)).test_client()
    files = {"caf\\xe9/Stra\\xdfe 1.jpg": latin1,
             "Ærø/Ångström ñ 2.jpg": os.fsencode(job.root / "Ærø" / "Ångström ñ 2.jpg")}
    for text, raw in files.items():
        found = client.get("/api/v1/images/lookup", query_string={"path": text}).get_json()
        assert [image["path"] for image in found["images"]] == [text]
        served = client.get(f"/api/v1/images/{found['images'][0]['id']}")
        assert served.status_code == 200
        with open(raw, "rb") as file:  # the row leads back to that very file
            assert client.get(f"/images/{found['images'][0]['id']}/file").data == file.read()
        thumbnail = client.get(f"/images/{found['images'][0]['id']}/thumbnail")
        assert (thumbnail.status_code, thumbnail.mimetype) == (200, "image/jpeg")
    # The escaped text of the Latin-1 name is not the name of a file spelt so literally.
    assert client.get("/api/v1/images/lookup",
                      query_string={"path": "café/Straße 1.jpg"}).get_json()["images"] == []


def test_a_rerun_with_nothing_to_do_does_not_load_the_model(tmp_path, settings_for,
                                                            extractor):
    """The no-op rerun runs the real job in a fresh interpreter, so that whether
    TensorFlow was imported is its own doing; a run with a new file loads the model."""
    root = tmp_path / "images"
    for seed in (1, 2):
        write_jpeg(root / f"{seed}.jpg", seed)
    url = f"sqlite:///{tmp_path / 'images.sqlite3'}"
    settings = settings_for(database_url=url, image_root=root)
    assert run_features(settings, quiet=True, extractor=extractor)["new"] == 2
    script = ("import json, sys, create_image_features\n"
              "assert create_image_features.main(['--quiet']) == 0\n"
              "print('LOADED', json.dumps(sorted(m for m in ('tensorflow', 'model.extractor')"
              " if m in sys.modules)))\n")
    environment = {**os.environ, "DATABASE_URL": url, "IMAGE_ROOT": str(root),
                   "MODEL_CACHE": str(settings.model_cache), "DASK_SCHEDULER": "",
                   "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOADED []" in done.stdout, done.stdout
    assert last_job(url).counts["unchanged"] == 2

    write_jpeg(root / "3.jpg", 3)
    counts = run_features(settings, quiet=True)  # no extractor given: the job loads it
    assert (counts["new"], counts["unchanged"]) == (1, 2)
    assert len(feature_rows(url)) == 3
