"""Migration 0008: a database of the previous release (grouping state in jobs.counts) is
served as before and its next runs have no work."""
from __future__ import annotations

import importlib.util
import json
from datetime import datetime

import numpy as np
import sqlalchemy as sa
from alembic import command
from sqlalchemy import select, update

from db.neighbours import write_lists
from numerics.list_changes import ListChanges
from db.engine import MIGRATIONS, make_engine, upgrade
from db.models import POOL3, SPACE_IDS, Image, ImageNeighbour, Job, NeighbourList, Space
from numerics.engine import ExactIndex
from grouping_support import add_images, embed
from schema_support import migrator

K = 3
ALL = 2 ** 63 - 1
# The jobs table as revision 0007 had it: counts as JSON text.
OLD_JOBS = sa.table("jobs", *(sa.column(name) for name in (
    "id", "kind", "started_at", "finished_at", "outcome", "counts", "message")))


def _migration():
    path = next((MIGRATIONS / "versions").glob("0008_*.py"))
    spec = importlib.util.spec_from_file_location("migration_0008", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_resume_state_is_read_as_the_previous_release_read_it():
    resume_state = _migration().resume_state
    done = {"spaces": {POOL3: {"k": 5, "valid_through": 7},
                       "whitened": {"k": 5, "valid_through": 3, "projection": "t"}}}
    assert resume_state([], POOL3) is None
    assert resume_state([("completed", done)], POOL3) == (ALL, 5, None)
    assert resume_state([("completed", done)], "whitened") == (ALL, 5, "t")
    assert resume_state([("running", done), ("completed", done)], POOL3) == (7, 5, None)
    assert resume_state([("failed", done)], "whitened") == (3, 5, "t")
    # Killed before it recorded anything: it wrote nothing, look further back.
    assert resume_state([("running", None), ("completed", done)], POOL3) == (ALL, 5, None)
    assert resume_state([("running", {"spaces": {}}), ("failed", done)], POOL3) == \
        (7, 5, None)
    # Runs from before spaces kept pool3's state at the top.
    assert resume_state([("completed", {"k": 4, "valid_through": 2})], POOL3) == \
        (ALL, 4, None)
    assert resume_state([("completed", {"k": 4, "valid_through": 2})], "whitened") is None


def _old_release_database(engine) -> list[int]:
    """Make what the previous release left after a completed feature and grouping run and
    a grouping run killed before it recorded anything; return the image ids."""
    migrator(engine)(command.upgrade, "0007")
    rng = np.random.default_rng(5)
    vectors = embed(rng.integers(0, 6, size=(14, 3)).astype(np.float32))
    ids = add_images(engine, vectors)
    found, distances = ExactIndex(vectors, np.array(ids)).search(vectors, np.array(ids), K)
    write_lists(engine, SPACE_IDS[POOL3],
                      ListChanges.replacing(ids, found, distances))
    with engine.begin() as connection:
        connection.execute(update(Image).values(needs_grouping=False,
                                                updated_at=Image.updated_at))
        connection.execute(sa.update(sa.table("spaces", sa.column("lists"))).values(
            lists=len(ids)))
        at = datetime(2026, 11, 1, 10)
        grouping = {"images": len(ids), "changed_images": len(ids), "vector_cache": "abc",
                    "spaces": {POOL3: {"mode": "full", "k": K, "lists_full": len(ids),
                                       "lists_checked": 0, "lists_written": len(ids),
                                       "rows_written": len(ids) * K,
                                       "valid_through": ALL}}}
        connection.execute(sa.insert(OLD_JOBS), [
            {"kind": "features", "started_at": at, "finished_at": at,
             "outcome": "completed", "counts": json.dumps({"new": len(ids)})},
            {"kind": "grouping", "started_at": at, "finished_at": at,
             "outcome": "completed", "counts": json.dumps(grouping, sort_keys=True)},
            {"kind": "grouping", "started_at": at, "finished_at": None,
             "outcome": "running", "counts": None},
            {"kind": "grouping", "started_at": at, "finished_at": at, "outcome": "failed",
             "counts": '{"images": 1'}])  # text the previous release could not read
    return ids


def _lists(engine):
    with engine.connect() as connection:
        return (sorted(connection.execute(select(ImageNeighbour.__table__)).all()),
                sorted(connection.execute(select(NeighbourList.__table__)).all()))


def _answers(settings, ids):
    from service import create_app
    client = create_app(settings).test_client()
    paths = (["/image_count"]
             + [f"/image_name_and_neighbours/{i}" for i in ids]
             + [f"/api/v1/images/{i}/neighbours" for i in ids]
             + [f"/api/v1/images/{i}" for i in ids[:3]])
    answers = {}
    for path in paths:
        response = client.get(path)
        assert response.status_code == 200, path
        answers[path] = response.get_json()
    return answers


def test_an_upgraded_database_is_served_alike_and_a_rerun_has_no_work(database_url,
                                                                      settings_for):
    from jobs.grouping.run import run

    engine = make_engine(database_url)
    try:
        ids = _old_release_database(engine)
        before = _lists(engine)
        upgrade(engine)
        with engine.connect() as connection:
            state = connection.execute(select(Space.valid_through, Space.k,
                                              Space.lists_projection)
                                       .where(Space.name == POOL3)).one()
            jobs = connection.execute(select(Job.outcome, Job.counts, Job.vector_cache)
                                      .order_by(Job.id)).all()
        assert tuple(state) == (ALL, K, None)
        assert [job.vector_cache for job in jobs] == [None, "abc", None, None]
        assert jobs[1].counts["spaces"][POOL3] == {
            "mode": "full", "k": K, "lists_full": len(ids), "lists_checked": 0,
            "lists_written": len(ids), "rows_written": len(ids) * K}
        assert "vector_cache" not in jobs[1].counts and jobs[3].counts is None
        assert _lists(engine) == before

        settings = settings_for(database_url=database_url, whitened_dimensions=0,
                                neighbours_k=K)
        served = _answers(settings, ids)
        # As the previous release served them: the stored lists, in list order.
        for image_id in ids:
            name, entries = served[f"/image_name_and_neighbours/{image_id}"]
            rows = sorted((row for row in before[0] if row.image_id == image_id),
                          key=lambda row: (row.distance, row.neighbour_id))
            assert name.endswith(".jpg")
            assert entries == [{"id": row.neighbour_id, "distance": row.distance}
                               for row in rows]
        counts = run(settings, quiet=True)
        pool3 = counts["spaces"][POOL3]
        assert pool3["mode"] == "incremental" and counts["changed_images"] == 0
        assert (pool3["lists_full"], pool3["lists_checked"], pool3["lists_written"]) == \
            (0, 0, 0)
        assert _lists(engine) == before
        assert _answers(settings, ids) == served
    finally:
        engine.dispose()


def test_downgrading_puts_the_state_back_where_the_previous_release_reads_it(
        database_url):
    engine = make_engine(database_url)
    try:
        _old_release_database(engine)
        upgrade(engine)
        migrator(engine)(command.downgrade, "0007")
        with engine.connect() as connection:
            rows = connection.execute(select(OLD_JOBS.c.outcome, OLD_JOBS.c.counts)
                                      .where(OLD_JOBS.c.kind == "grouping")
                                      .order_by(OLD_JOBS.c.id.desc())).all()
        runs = [(outcome, json.loads(text) if text else None) for outcome, text in rows]
        assert _migration().resume_state(runs, POOL3) == (ALL, K, None)
        assert runs[-1][1]["vector_cache"] == "abc"
    finally:
        engine.dispose()
