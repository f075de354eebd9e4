"""The grouping job on SQLite and MariaDB: full, incremental and resumed runs."""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings as hypothesis_settings, \
    strategies as st
from sqlalchemy import delete, event, insert, inspect, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError

from db import features as feature_table, neighbours as neighbour_table
from db.features import load_ok_ids, load_vectors
from db.images import clear_needs_grouping, load_changed
from db.neighbours import write_lists
from numerics.list_changes import ListChanges
from db.engine import make_engine
from db.jobs import start_job
from db.models import (AUGMENTED, MISSING, OK, POOL3, SPACE_IDS, WHITENED, AugmentationNeighbour,
                       Image, ImageFeatures, ImageNeighbour, Job, NeighbourList, Space)
from numerics.vectors import DIMENSIONS, MODEL_NAME
from jobs.grouping import vector_cache
from numerics import whitening
from numerics.engine import ExactIndex
from db.spaces import ResumeState, resume_state, stored_whitening
from jobs.grouping.plan import ALL, NONE, starting_point
from jobs.grouping import run as grouping_run
from jobs.grouping.reader import Reader
from jobs.grouping.run import MERGES_PER_BLOCK, run as run_job
from grouping_support import (add_images, apply_step, change_image, embed, expected_lists,
                              flagged, job_rows, operations, pool3, run, run_interrupted,
                              small_vector, stored_lists, whitened_lists_are_exact)


def clear(engine):
    with engine.begin() as connection:
        for table in (AugmentationNeighbour, ImageNeighbour, NeighbourList, ImageFeatures,
                      Image, Job, Space):
            connection.execute(delete(table))


def test_vectors_load_in_bounded_pages(grouping_db):
    engine, _ = grouping_db
    vectors = np.random.default_rng(2).random((10, DIMENSIONS)).astype(np.float32)
    ids = add_images(engine, vectors)
    for row in (0, 4, 5):
        change_image(engine, ids[row], status=MISSING)
    ok = [row for row in range(10) if row not in (0, 4, 5)]
    statements = []

    def record(_connection, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        got_ids, got_vectors = load_vectors(engine, batch_rows=3)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert got_ids.tolist() == [ids[row] for row in ok]
    assert got_vectors.dtype == np.float32 and np.array_equal(got_vectors, vectors[ok])
    # 7 'ok' images in pages of at most 3: three bounded queries, none for the whole.
    assert len([s for s in statements if "LIMIT" in s.upper()]) == 3
    default_ids, default_vectors = load_vectors(engine)
    assert np.array_equal(default_ids, got_ids)
    assert np.array_equal(default_vectors, got_vectors)


def test_first_run_is_full_then_only_new_work(grouping_db):
    engine, settings = grouping_db
    rng = np.random.default_rng(1)
    vectors = np.maximum(rng.normal(size=(40, DIMENSIONS)), 0).astype(np.float32)
    vectors[7] = vectors[3]  # a duplicate: distance 0
    ids = add_images(engine, vectors)
    add_images(engine, vectors[:2], status=MISSING)  # takes no part

    counts = run(settings, k=5, quiet=True)
    assert counts["mode"] == "full" and counts["lists_written"] == 40
    lists = stored_lists(engine)
    index = ExactIndex(vectors, ids)
    want_ids, want_distances = index.search(vectors, ids, 5)
    for row, image_id in enumerate(ids):
        assert lists[image_id] == (want_ids[row].tolist(), want_distances[row].tolist())
    assert lists[ids[3]][0][0] == ids[7] and lists[ids[3]][1][0] == 0.0
    assert flagged(engine) == 0  # the missing ones too: they have no list to change
    assert [outcome for outcome, _ in job_rows(engine)] == ["completed"]

    again = run(settings, k=5, quiet=True)
    assert again["mode"] == "incremental" and again["lists_written"] == 0

    new = np.maximum(rng.normal(size=(1, DIMENSIONS)), 0).astype(np.float32)
    new_id = add_images(engine, new)[0]
    counts = run(settings, k=5, quiet=True)
    assert counts["mode"] == "incremental"
    assert counts["lists_full"] == 1 and counts["lists_checked"] == 40
    all_vectors, all_ids = np.vstack([vectors, new]), ids + [new_id]
    want_ids, want_distances = ExactIndex(all_vectors, all_ids).search(all_vectors,
                                                                       all_ids, 5)
    lists = stored_lists(engine)
    assert set(lists) == set(all_ids)
    for row, image_id in enumerate(all_ids):
        assert lists[image_id] == (want_ids[row].tolist(), want_distances[row].tolist())
    assert counts["lists_written"] == 1 + sum(new_id in lists[i][0] for i in ids)


def check_sequence(engine, settings, initial, k, steps):
    clear(engine)
    ids = add_images(engine, embed(np.array(initial, dtype=np.float32)))
    run(settings, k=k, quiet=True)
    assert stored_lists(engine) == expected_lists(engine, k)
    for step in steps:
        apply_step(engine, ids, *step)
        counts = run(settings, k=k, quiet=True)
        # A full run only where the change reaches every list.
        assert counts["mode"] == "incremental" or (
            counts["mode"] == "full" and counts["lists_full"] == counts["images"])
        assert stored_lists(engine) == expected_lists(engine, k), (step, counts)
    incremental = stored_lists(engine)
    counts = run(settings, k=k, full=True, quiet=True)
    assert counts["mode"] == "full"
    assert stored_lists(engine) == incremental


@hypothesis_settings(max_examples=12, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])
@given(initial=st.lists(small_vector, min_size=1, max_size=12),
       k=st.integers(1, 6), steps=operations)
def test_incremental_runs_equal_full_runs(grouping_db, initial, k, steps):
    # Vectors of small integers: many duplicates and exact ties, every distance exact in
    # float64, so the brute force is the exact answer, ties ordered by id included.
    engine, settings = grouping_db
    check_sequence(engine, settings, initial, k, steps)


def test_removed_and_changed_images_leave_the_lists(grouping_db):
    engine, settings = grouping_db
    rng = np.random.default_rng(5)
    ids = add_images(engine, embed(rng.integers(0, 4, size=(30, 4)).astype(np.float32)))
    run(settings, k=4, quiet=True)
    change_image(engine, ids[0], status=MISSING)
    change_image(engine, ids[1], vector=embed(np.full((1, 4), 9, np.float32))[0])
    counts = run(settings, k=4, quiet=True)
    lists = stored_lists(engine)
    assert ids[0] not in lists and all(ids[0] not in n for n, _ in lists.values())
    assert lists == expected_lists(engine, 4)
    assert counts["lists_deleted"] == 1 and flagged(engine) == 0


def test_a_flag_set_again_during_a_run_is_kept(grouping_db):
    engine, settings = grouping_db
    ids = add_images(engine, embed(np.eye(3, dtype=np.float32)))
    changed = load_changed(engine)
    # The feature job changes two images after the grouping job read the flags.
    with engine.begin() as connection:
        connection.execute(update(Image).where(Image.id == ids[0]).values(
            updated_at=datetime(2031, 1, 1) + timedelta(seconds=1)))
        connection.execute(update(Image).where(Image.id == ids[1]).values(status=MISSING))
    assert clear_needs_grouping(engine, changed) == 1
    assert flagged(engine) == 2


def test_an_interrupted_run_records_what_it_wrote_and_the_next_resumes(grouping_db,
                                                                       monkeypatch):
    engine, settings = grouping_db
    rng = np.random.default_rng(12)
    ids = add_images(engine, embed(rng.integers(0, 5, size=(30, 4)).astype(np.float32)))
    for mode, writes in (("full", 3), ("resume", 2)):
        written = run_interrupted(monkeypatch, settings, writes)
        outcome, counts = job_rows(engine)[-1]
        counts = pool3(counts)
        assert outcome == "failed" and counts["mode"] == mode
        assert resume_state(engine, POOL3).valid_through == max(written[-1][0])
        assert counts["lists_written"] == sum(len(lists) for lists, _ in written)
        assert counts["rows_written"] == sum(rows for _, rows in written)
    counts = run(settings, k=4, quiet=True)
    assert counts["mode"] == "resume"
    assert counts["lists_full"] == len(ids) - 5 * 4  # taken up where it stopped
    assert stored_lists(engine) == expected_lists(engine, 4)
    assert flagged(engine) == 0


def test_dry_run_changes_nothing(grouping_db):
    engine, settings = grouping_db
    add_images(engine, embed(np.eye(3, dtype=np.float32)))
    counts = run(settings, k=2, dry_run=True)
    assert counts["dry_run"] and counts["mode"] == "full" and counts["lists_full"] == 3
    assert stored_lists(engine) == {} and job_rows(engine) == [] and flagged(engine) == 3


def test_dry_run_on_an_empty_database_creates_nothing(database_url, settings_for):
    settings = settings_for(database_url=database_url)
    counts = run(settings, k=3, dry_run=True)
    if database_url.startswith("sqlite"):
        path = Path(make_url(database_url).database)
        assert not path.exists()
        path.touch()  # an empty SQLite file: a database without tables
        again = run(settings, k=3, dry_run=True)
        assert path.stat().st_size == 0 and "nothing to group" in again["note"]
    engine = make_engine(database_url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
    assert counts["dry_run"] and counts["lists_full"] == 0
    assert "nothing to group" in counts["note"]


def test_another_k_recomputes_everything(grouping_db):
    engine, settings = grouping_db
    add_images(engine, embed(np.arange(12, dtype=np.float32).reshape(6, 2)))
    run(settings, k=2, quiet=True)
    assert run(settings, k=3, quiet=True)["mode"] == "full"
    assert stored_lists(engine) == expected_lists(engine, 3)
    outcome, counts = job_rows(engine)[-1]
    assert outcome == "completed" and pool3(counts)["k"] == 3


def test_starting_point_from_the_stored_state():
    # Which runs' records give the state is the migration's concern since the state
    # lives in columns (test_upgrade_state.py: the resume state of the latest runs).
    done, stopped = ResumeState(ALL, 5, None), ResumeState(7, 5, None)
    assert starting_point(None, 5, False) == NONE
    assert starting_point(done, 5, False) == ALL
    assert starting_point(done, 5, True) == NONE
    assert starting_point(done, 6, False) == NONE
    assert starting_point(stopped, 5, False) == 7
    assert starting_point(stopped, 5, False, "2026-01-01T00:00:00") == NONE


def log_writes(engine):
    """Record every row the job inserts, deletes or updates in image_neighbours."""
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE touched (image_id BIGINT, neighbour_id "
                                "BIGINT, operation VARCHAR(6))"))
        for operation, row in (("INSERT", "NEW"), ("DELETE", "OLD"), ("UPDATE", "OLD")):
            connection.execute(text(
                f"CREATE TRIGGER log_{operation.lower()} AFTER {operation} ON "
                f"image_neighbours FOR EACH ROW BEGIN INSERT INTO touched VALUES "
                f"({row}.image_id, {row}.neighbour_id, '{operation}'); END"))


def test_a_merge_writes_only_the_entries_that_enter_and_leave(grouping_db):
    engine, settings = grouping_db
    ids = add_images(engine, embed(np.arange(0, 40, 2, dtype=np.float32)[:, None]))
    run(settings, k=6, quiet=True)
    before = stored_lists(engine)
    log_writes(engine)
    new_id = add_images(engine, embed(np.array([[9]], dtype=np.float32)))[0]
    counts = run(settings, k=6, quiet=True)
    after = stored_lists(engine)
    assert after == expected_lists(engine, 6)
    with engine.connect() as connection:
        touched = connection.execute(text("SELECT image_id, neighbour_id, operation "
                                          "FROM touched")).all()
    assert not [row for row in touched if row[2] == "UPDATE"]
    inserted = sorted((i, n) for i, n, op in touched if op == "INSERT")
    deleted = sorted((i, n) for i, n, op in touched if op == "DELETE")
    assert counts["rows_written"] == len(inserted)
    want_inserted, want_deleted = [], []
    for image_id in ids:
        old, new = set(before[image_id][0]), set(after[image_id][0])
        want_deleted += [(image_id, n) for n in old - new]
        want_inserted += [(image_id, n) for n in new - old]
    want_inserted += [(new_id, n) for n in after[new_id][0]]  # its own list, whole
    assert deleted == sorted(want_deleted) and inserted == sorted(want_inserted)
    # The new image enters lists at their top and further down, and each costs one
    # inserted and one deleted row, wherever it enters.
    entered = [i for i in ids if new_id in after[i][0]]
    positions = {after[i][0].index(new_id) for i in entered}
    assert 0 in positions and max(positions) > 1
    assert len(deleted) == len(entered) and len(inserted) == len(entered) + 6


@pytest.mark.parametrize("full", [False, True])
def test_an_image_committed_while_vectors_load_is_grouped_by_the_next_run(grouping_db,
                                                                          monkeypatch,
                                                                          full):
    engine, settings = grouping_db
    rng = np.random.default_rng(7)
    add_images(engine, embed(rng.random((12, 4)).astype(np.float32)))
    run(settings, k=5, quiet=True)
    load_vectors = feature_table.load_vectors

    def load_then_feature_job_commits(*args, **kwargs):
        loaded = load_vectors(*args, **kwargs)
        add_images(engine, embed(rng.random((1, 4)).astype(np.float32)))
        return loaded

    monkeypatch.setattr(feature_table, "load_vectors", load_then_feature_job_commits)
    run(settings, k=5, full=full, quiet=True)
    monkeypatch.setattr(feature_table, "load_vectors", load_vectors)
    assert flagged(engine) == 1  # not seen by that run, so not cleared by it
    run(settings, k=5, quiet=True)
    assert stored_lists(engine) == expected_lists(engine, 5)
    assert flagged(engine) == 0


def small_integer_images(engine, rng, count):
    return add_images(engine, embed(rng.integers(0, 6, size=(count, 4)).astype(np.float32)))


def test_an_incremental_run_reads_only_the_flagged_vectors(grouping_mariadb_db):
    engine, settings = grouping_mariadb_db
    rng = np.random.default_rng(21)
    ids = small_integer_images(engine, rng, 20)
    assert run(settings, k=4, quiet=True)["vectors_from_database"] == 20
    files = sorted(settings.vector_cache.rglob("*"))
    assert run(settings, k=4, quiet=True)["vectors_from_database"] == 0
    assert sorted(settings.vector_cache.rglob("*")) == files  # nothing new, nothing written
    small_integer_images(engine, rng, 2)
    change_image(engine, ids[3], vector=embed(np.full((1, 4), 5, np.float32))[0])
    change_image(engine, ids[4], status=MISSING)
    counts = run(settings, k=4, quiet=True)
    # The two new images and the changed one; the others come from the cache.
    assert counts["mode"] == "incremental" and counts["vectors_from_database"] == 3
    assert stored_lists(engine) == expected_lists(engine, 4)
    change_image(engine, ids[4], status=OK)  # back, with the vector it had
    assert run(settings, k=4, quiet=True)["vectors_from_database"] == 1
    assert stored_lists(engine) == expected_lists(engine, 4)
    assert run(settings, k=4, full=True, quiet=True)["vectors_from_database"] == 22


def test_the_vector_cache_is_trusted_only_after_a_completed_run_that_left_it(
        grouping_mariadb_db, settings_for, tmp_path):
    engine, settings = grouping_mariadb_db
    rng = np.random.default_rng(22)
    ids = small_integer_images(engine, rng, 12)
    run(settings, k=3, quiet=True)
    # A killed run: its job row still says running, and it may have changed anything.
    start_job(engine, "grouping")
    change_image(engine, ids[0], vector=embed(np.full((1, 4), 4, np.float32))[0])
    assert run(settings, k=3, quiet=True)["vectors_from_database"] == 12
    # A run from elsewhere (another cache folder) completes in between.
    elsewhere = settings_for(database_url=settings.database_url,
                             vector_cache=tmp_path / "elsewhere")
    change_image(engine, ids[1], vector=embed(np.full((1, 4), 3, np.float32))[0])
    assert run(elsewhere, k=3, quiet=True)["vectors_from_database"] == 12
    change_image(engine, ids[2], vector=embed(np.full((1, 4), 2, np.float32))[0])
    assert run(settings, k=3, quiet=True)["vectors_from_database"] == 12
    assert stored_lists(engine) == expected_lists(engine, 3)
    # No cache at all: every run reads every vector.
    plain = settings.replace(vector_cache=None)
    assert run(plain, k=3, quiet=True)["vectors_from_database"] == 12


def test_a_damaged_vector_cache_is_ignored(grouping_mariadb_db, caplog):
    engine, settings = grouping_mariadb_db
    rng = np.random.default_rng(23)
    small_integer_images(engine, rng, 10)
    run(settings, k=3, quiet=True)
    for path in settings.vector_cache.rglob("*-vectors.npy"):
        path.write_bytes(b"not a numpy file")
    small_integer_images(engine, rng, 1)
    counts = run(settings, k=3, quiet=True)
    assert counts["vectors_from_database"] == 11 and "vector cache" in caplog.text
    assert stored_lists(engine) == expected_lists(engine, 3)
    # The run wrote a whole new copy, used by the next one.
    small_integer_images(engine, rng, 1)
    assert run(settings, k=3, quiet=True)["vectors_from_database"] == 1
    assert stored_lists(engine) == expected_lists(engine, 3)


def test_the_vector_cache_keeps_few_segments(grouping_mariadb_db):
    engine, settings = grouping_mariadb_db
    rng = np.random.default_rng(24)
    small_integer_images(engine, rng, 16)
    run(settings, k=3, quiet=True)
    for _ in range(vector_cache.MAX_SEGMENTS + 3):
        small_integer_images(engine, rng, 1)
        assert run(settings, k=3, quiet=True)["vectors_from_database"] == 1
        manifest = json.loads(next(settings.vector_cache.rglob("manifest.json")).read_text())
        assert 1 <= len(manifest["segments"]) <= vector_cache.MAX_SEGMENTS
        files = {p.name for p in next(settings.vector_cache.rglob("manifest.json")).parent
                 .iterdir()}
        assert files == {"manifest.json", *(f"{name}-{part}.npy" for name in
                                            manifest["segments"]
                                            for part in ("ids", "vectors"))}
    assert stored_lists(engine) == expected_lists(engine, 3)


def test_writing_lists_leaves_foreign_key_checks_on(grouping_db):
    # The writes skip the checks (image rows are never deleted); the connection goes
    # back to the pool checking them again, also after a failed write.
    engine, _ = grouping_db
    ids = add_images(engine, embed(np.eye(3, dtype=np.float32)))
    write_lists(engine, SPACE_IDS[POOL3], ListChanges.replacing(
        [ids[0]], np.array([[ids[1]]]), np.array([[1.5]])))
    with pytest.raises(IntegrityError):  # the same row again, the old one kept
        write_lists(engine, SPACE_IDS[POOL3],
                          ListChanges([], [], [(ids[0], ids[1], 1.5)], []))
    pragma = ("PRAGMA foreign_keys" if engine.dialect.name == "sqlite"
              else "SELECT @@SESSION.foreign_key_checks")
    with engine.connect() as connection:
        assert connection.exec_driver_sql(pragma).scalar() == 1
        with pytest.raises(IntegrityError):  # a neighbour that is no image
            connection.execute(insert(ImageNeighbour).values(
                image_id=ids[0], space=SPACE_IDS[POOL3], neighbour_id=10 ** 9, distance=1.0))
            connection.commit()


def test_incremental_blocks_bound_the_lists_searched_whole(grouping_db, monkeypatch):
    engine, settings = grouping_db
    rng = np.random.default_rng(25)
    small_integer_images(engine, rng, 40)
    run(settings, k=3, quiet=True)
    small_integer_images(engine, rng, 5)
    blocks = []
    write_lists = neighbour_table.write_lists

    def recording(engine, space, changes, *args, **kwargs):
        blocks.append((len(changes.replaced), changes.lists()))
        return write_lists(engine, space, changes, *args, **kwargs)

    monkeypatch.setattr(neighbour_table, "write_lists", recording)
    counts = run(settings, k=3, quiet=True, block_rows=2)
    assert stored_lists(engine) == expected_lists(engine, 3)
    assert sum(lists for _, lists in blocks) == counts["lists_written"]
    assert all(whole <= 2 and lists <= 2 * MERGES_PER_BLOCK for whole, lists in blocks)
    # Lists merged into ride along in the blocks of the five searched whole.
    assert counts["lists_written"] > 10 and len(blocks) == 3


def test_no_vector_cache_on_sqlite(grouping_sqlite_db):
    # SQLite's vectors are in a local file already; a copy would only double them.
    engine, settings = grouping_sqlite_db
    rng = np.random.default_rng(26)
    small_integer_images(engine, rng, 8)
    run(settings, k=3, quiet=True)
    small_integer_images(engine, rng, 1)
    assert run(settings, k=3, quiet=True)["vectors_from_database"] == 9
    assert not settings.vector_cache.exists()


def test_a_change_that_reaches_every_list_runs_as_a_full_run(grouping_db):
    engine, settings = grouping_db
    rng = np.random.default_rng(27)
    ids = small_integer_images(engine, rng, 12)
    run(settings, k=3, quiet=True)
    for image_id in ids:  # every vector recomputed, as after a new decoding
        change_image(engine, image_id, vector=embed(rng.integers(0, 6, (1, 4)).astype(
            np.float32))[0])
    counts = run(settings, k=3, quiet=True)
    assert counts["mode"] == "full" and counts["lists_full"] == 12
    assert stored_lists(engine) == expected_lists(engine, 3) and flagged(engine) == 0
    change_image(engine, ids[0], vector=embed(np.zeros((1, 4), np.float32))[0])
    assert run(settings, k=3, quiet=True)["mode"] == "incremental"
    assert stored_lists(engine) == expected_lists(engine, 3)


def test_lists_wait_while_vectors_of_an_earlier_model_remain(grouping_db):
    engine, settings = grouping_db
    rng = np.random.default_rng(28)
    ids = small_integer_images(engine, rng, 10)
    run(settings, k=3, quiet=True)
    before = stored_lists(engine)
    with engine.begin() as connection:  # vectors of the decoding before the fix
        connection.execute(update(ImageFeatures).values(
            model="inception_v3_2015_12_05_pool_3"))
    for image_id in ids[:4]:  # the feature job recomputed four of them, then was killed
        change_image(engine, image_id, vector=embed(np.full((1, 4), 7, np.float32))[0])
        with engine.begin() as connection:
            connection.execute(update(ImageFeatures).where(ImageFeatures.image_id == image_id)
                               .values(model=MODEL_NAME))
    counts = run(settings, k=3, quiet=True)
    assert counts["outdated_vectors"] == 6 and "earlier version" in counts["note"]
    assert stored_lists(engine) == before and flagged(engine) == 4
    assert run(settings, k=3, dry_run=True)["outdated_vectors"] == 6
    with engine.begin() as connection:
        connection.execute(update(ImageFeatures).values(model=MODEL_NAME))
    run(settings, k=3, quiet=True)
    assert stored_lists(engine) == expected_lists(engine, 3) and flagged(engine) == 0


@hypothesis_settings(max_examples=10, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])
@given(initial=st.lists(small_vector, min_size=4, max_size=12),
       k=st.integers(1, 6), steps=operations)
def test_incremental_runs_equal_full_runs_in_the_learned_space(grouping_db, few_to_learn,
                                                               initial, k, steps):
    assume(len({tuple(vector) for vector in initial}) > 1)  # some variance to learn
    engine, settings = grouping_db
    clear(engine)
    ids = add_images(engine, embed(np.array(initial, dtype=np.float32)))
    assert run_job(settings, k=k, quiet=True)["spaces"][WHITENED]["mode"] == "full"
    learned = whitened_lists_are_exact(engine, k)
    for step in steps:
        apply_step(engine, ids, *step)
        state = run_job(settings, k=k, quiet=True)["spaces"][WHITENED]
        assert state["mode"] == "incremental" or state["lists_full"] == len(
            load_ok_ids(engine))
        # The space learned first is kept: every run sees the same space.
        assert whitened_lists_are_exact(engine, k).learned_at == learned.learned_at
    incremental = stored_lists(engine, WHITENED)
    run_job(settings, k=k, full=True, quiet=True)
    assert stored_lists(engine, WHITENED) == incremental


def test_the_learned_space_waits_for_enough_images_then_is_learned_once(grouping_db):
    engine, settings = grouping_db
    rng = np.random.default_rng(29)
    add_images(engine, np.maximum(rng.normal(size=(whitening.MIN_IMAGES - 1, DIMENSIONS)),
                                  0).astype(np.float32))
    counts = run_job(settings, k=5, quiet=True)
    note = counts["spaces"][WHITENED]["note"]
    assert note == (f"not computed: learning it needs at least {whitening.MIN_IMAGES} "
                    f"images with features, the collection has {whitening.MIN_IMAGES - 1}")
    assert stored_lists(engine, WHITENED) == {} and len(stored_lists(engine)) == 199
    with engine.connect() as connection:
        row = connection.execute(select(Space.note, Space.dimensions)
                                 .where(Space.name == WHITENED)).one()
    assert row.note == note.removeprefix("not computed: ") and row.dimensions is None
    new = add_images(engine, np.maximum(rng.normal(size=(2, DIMENSIONS)), 0).astype(
        np.float32))
    counts = run_job(settings, k=5, quiet=True)
    assert counts["spaces"][WHITENED]["mode"] == "full"
    assert counts["spaces"][POOL3]["mode"] == "incremental"
    learned = stored_whitening(engine)[0]
    assert learned.learned_from == whitening.MIN_IMAGES + 1 and learned.dimensions == 200
    assert set(stored_lists(engine, WHITENED)) == set(stored_lists(engine))
    ids, vectors = load_vectors(engine)
    want_ids, want_distances = ExactIndex(learned.apply(vectors), ids).search(
        learned.apply(vectors), ids, 5)
    lists = stored_lists(engine, WHITENED)
    for row, image_id in enumerate(ids.tolist()):
        assert lists[image_id] == (want_ids[row].tolist(), want_distances[row].tolist())
    change_image(engine, new[0], status=MISSING)
    counts = run_job(settings, k=5, quiet=True)
    assert counts["spaces"][WHITENED]["mode"] == "incremental"
    assert stored_whitening(engine)[0].learned_at == learned.learned_at
    assert new[0] not in stored_lists(engine, WHITENED)


def test_relearning_or_new_dimensions_recompute_the_space_and_zero_removes_it(
        grouping_db, few_to_learn, settings_for):
    engine, settings = grouping_db
    rng = np.random.default_rng(30)
    small_integer_images(engine, rng, 12)
    run_job(settings, k=3, quiet=True)
    first = stored_whitening(engine)[0]
    counts = run_job(settings, k=3, quiet=True, relearn=True)
    second = whitened_lists_are_exact(engine, 3)
    assert counts["spaces"][WHITENED]["mode"] == "full"
    assert counts["spaces"][POOL3]["lists_written"] == 0  # the original space untouched
    assert second.learned_at > first.learned_at
    damped = settings.replace(whitened_shrinkage=1.0)
    assert run_job(damped, k=3, quiet=True)["spaces"][WHITENED]["mode"] == "full"
    assert whitened_lists_are_exact(engine, 3).shrinkage == 1.0
    fewer = settings.replace(whitened_dimensions=2)
    assert run_job(fewer, k=3, quiet=True)["spaces"][WHITENED]["mode"] == "full"
    assert whitened_lists_are_exact(engine, 3).dimensions == 2
    assert run_job(fewer, k=3, quiet=True)["spaces"][WHITENED]["lists_written"] == 0
    pool3_lists = stored_lists(engine)
    counts = run_job(settings.replace(whitened_dimensions=0), k=3, quiet=True)
    assert list(counts["spaces"]) == [POOL3]
    assert stored_lists(engine, WHITENED) == {} and stored_lists(engine) == pool3_lists
    assert stored_whitening(engine) == (None, {})
    assert run_job(fewer, k=3, quiet=True)["spaces"][WHITENED]["mode"] == "full"
    whitened_lists_are_exact(engine, 3)


def _neighbour_index(url) -> bool:
    """Return whether the SQLite file has image_neighbours' neighbour_id index, read on
    a connection of its own (the job's writes are committed, WAL)."""
    connection = sqlite3.connect(make_url(url).database)
    try:
        return connection.execute("SELECT count(*) FROM sqlite_master WHERE type = 'index' "
                                  "AND name = 'ix_image_neighbours_neighbour_id'"
                                  ).fetchone()[0] == 1
    finally:
        connection.close()


def test_a_full_run_on_sqlite_writes_without_the_neighbour_index_then_builds_it(
        grouping_sqlite_db):
    engine, settings = grouping_sqlite_db
    url = engine.url.render_as_string(hide_password=False)
    rng = np.random.default_rng(8)
    add_images(engine, embed(rng.integers(0, 5, size=(30, 4)).astype(np.float32)))
    during = []

    def before(_connection, _cursor, statement, *_):
        if statement.startswith("INSERT INTO image_neighbours"):
            during.append(_neighbour_index(url))

    event.listen(Engine, "before_cursor_execute", before)
    try:
        assert run(settings, k=5, quiet=True)["mode"] == "full"
    finally:
        event.remove(Engine, "before_cursor_execute", before)
    assert during and not any(during)
    assert _neighbour_index(url)
    assert stored_lists(engine) == expected_lists(engine, 5)

    # A run killed while it wrote leaves the index missing; the next run builds it
    # before its plan looks up the lists that hold changed images.
    with engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_image_neighbours_neighbour_id"))
    change_image(engine, 3, vector=embed(np.full((1, 4), 9, np.float32))[0])
    assert run(settings, k=5, quiet=True)["mode"] == "incremental"
    assert _neighbour_index(url)
    assert stored_lists(engine) == expected_lists(engine, 5)


def test_a_rerun_with_nothing_to_do_reads_no_vector_and_counts_as_the_full_path(
        grouping_db, few_to_learn, monkeypatch):
    engine, settings = grouping_db
    rng = np.random.default_rng(31)
    small_integer_images(engine, rng, 12)
    settings = settings.replace(whitened_dimensions=3, augmented_k=2)
    first = run_job(settings, k=3, quiet=True)
    assert set(first["spaces"]) == {POOL3, WHITENED, AUGMENTED}
    lists = {space: stored_lists(engine, space) for space in first["spaces"]}
    loads = []
    read_vectors = Reader.vectors

    def counted(*args, **kwargs):
        loads.append(args)
        return read_vectors(*args, **kwargs)

    monkeypatch.setattr(Reader, "vectors", counted)
    quick = run_job(settings, k=3, quiet=True)
    assert quick.pop("note") == "every list is up to date"
    assert loads == []
    # The same rerun through the whole path loads every vector (so the check above can
    # fail) and gives the same counts.
    with monkeypatch.context() as patched:
        patched.setattr(grouping_run, "_up_to_date", lambda *_: False)
        whole = run_job(settings, k=3, quiet=True)
    assert len(loads) == 1
    assert quick["vectors_from_database"] == 0
    for counts in quick, whole:
        del counts["seconds"], counts["vectors_from_database"]
    assert quick == whole
    assert {space: stored_lists(engine, space) for space in lists} == lists
    # Anything that changes a list still gets a run that reads the vectors: a flag, a
    # setting of a space, another k, a space turned off.
    small_integer_images(engine, rng, 1)
    assert run_job(settings, k=3, quiet=True)["spaces"][POOL3]["lists_full"] == 1
    for changed, k in ((dict(augmented_k=3), 3), (dict(whitened_shrinkage=1.0), 3),
                       ({}, 4), (dict(augmented_k=0), 4)):
        settings = settings.replace(**changed)
        counts = run_job(settings, k=k, quiet=True)
        assert "note" not in counts, changed
        assert run_job(settings, k=k, quiet=True)["note"] == "every list is up to date"
