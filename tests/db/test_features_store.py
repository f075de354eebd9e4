"""The feature job's queries, on SQLite and MariaDB, without the model."""
from __future__ import annotations

from sqlalchemy import delete, select

from db.engine import make_engine, upgrade
from db.features import ImageResult, with_features, write_results
from db.images import load_known, mark_missing, register
from db.models import Image, ImageFeatures


def rows(n, start=0):
    return [{"path": f"p/{i}.jpg", "path_hash": f"{i:064x}", "file_name": f"{i}.jpg",
             "size": i, "mtime_ns": 10 * i} for i in range(start, start + n)]


def engine_for(url):
    engine = make_engine(url)
    upgrade(engine)
    return engine


def test_register_and_load_known_page_by_page(database_url, monkeypatch):
    engine = engine_for(database_url)
    monkeypatch.setattr("db.chunks.IN_LIST", 3)  # several chunks
    ids = register(engine, rows(7))
    assert sorted(ids) == [f"{i:064x}" for i in range(7)]
    assert sorted(ids.values()) == list(range(min(ids.values()), min(ids.values()) + 7))
    known = load_known(engine, page=2)  # several pages, the last one partial
    assert {h: (k.id, k.size, k.mtime_ns, k.status) for h, k in known.items()} == {
        f"{i:064x}": (ids[f"{i:064x}"], i, 10 * i, "pending") for i in range(7)}
    with engine.connect() as connection:
        assert not any(connection.execute(select(Image.needs_grouping)).scalars())
    engine.dispose()


def test_ids_are_never_reused(database_url):
    engine = engine_for(database_url)
    first = register(engine, rows(3))
    with engine.begin() as connection:
        connection.execute(delete(Image).where(Image.id == max(first.values())))
    again = register(engine, rows(1, start=3))
    assert min(again.values()) > max(first.values())
    engine.dispose()


def test_write_results_replaces_features_in_one_batch(database_url):
    engine = engine_for(database_url)
    ids = list(register(engine, rows(3)).values())
    ok = {"status": "ok", "error": None, "width": 5, "height": 4, "size": 1, "mtime_ns": 2,
          "content_hash": "c"}
    write_results(engine, [ImageResult(i, ok, vector=bytes([i % 256]) * 8, regroup=True)
                           for i in ids], "m1")
    failed = {"status": "failed", "error": "truncated JPEG", "width": None, "height": None,
              "size": 1, "mtime_ns": 3, "content_hash": "d"}
    write_results(engine, [ImageResult(ids[0], ok, vector=b"\x07" * 8, regroup=True),
                           ImageResult(ids[1], failed, drop_features=True),
                           ImageResult(ids[2], {"size": 9, "mtime_ns": 9})], "m2")
    with engine.connect() as connection:
        features = dict(connection.execute(
            select(ImageFeatures.image_id, ImageFeatures.vector)).all())
        images = {r.id: r for r in connection.execute(select(Image))}
    assert features == {ids[0]: b"\x07" * 8, ids[2]: bytes([ids[2] % 256]) * 8}
    assert (images[ids[1]].status, images[ids[1]].error) == ("failed", "truncated JPEG")
    assert (images[ids[2]].size, images[ids[2]].width, images[ids[2]].status) == (9, 5, "ok")
    assert with_features(engine, ids) == {ids[0], ids[2]}
    engine.dispose()


def test_mark_missing_regroups_only_images_that_were_grouped(database_url):
    engine = engine_for(database_url)
    ids = list(register(engine, rows(3)).values())
    write_results(engine, [ImageResult(ids[0], {"status": "ok"}),
                           ImageResult(ids[1], {"status": "failed", "error": "x"})], "m")
    mark_missing(engine, ids)
    with engine.connect() as connection:
        got = {r.id: (r.status, r.needs_grouping, r.error) for r in connection.execute(
            select(Image))}
    assert got == {ids[0]: ("missing", True, None), ids[1]: ("missing", False, "x"),
                   ids[2]: ("missing", False, None)}
    engine.dispose()
