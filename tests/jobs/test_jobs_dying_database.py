"""The two jobs when MariaDB dies under them (SIGKILL of the server) or drops their
connections (KILL CONNECTION) in the middle of their writes.

Each interrupted run must exit with status 1 and one line naming the cause, leave its jobs
row not claiming success, and a plain rerun once the server is back must give the
database an uninterrupted run gives. The server killed here is a second private one
(port TEST_MARIADB_KILL_PORT, default the main test server's port + 20), started and
killed by these tests alone; the jobs are real processes of the two scripts.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import make_url

from db.engine import make_engine, upgrade
from db.models import OK, Image, ImageFeatures, ImageNeighbour, Job, NeighbourList
from db.paths import text_hash
from numerics.vectors import DIMENSIONS, MODEL_NAME, encode_vector
from jobs.features.job import run as run_features
from features_support import MODEL_CACHE, ROOT, assert_same, write_jpeg
from jobs.grouping.run import run as run_grouping

pytestmark = pytest.mark.slow
GROUPING_IMAGES, GROUPING_BATCH = 1500, 50


@contextlib.contextmanager
def scratch_database(server_url: str):
    """Yield the URL of a new database on the killable server; drop it afterwards."""
    # Not db.scratch's: its pooled admin connection would not outlive the kill.
    name = f"dying_{uuid.uuid4().hex[:12]}"

    def admin(statement):
        engine = create_engine(make_url(server_url).set(database=None))
        with engine.begin() as connection:
            connection.execute(text(statement))
        engine.dispose()

    admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        admin(f"DROP DATABASE IF EXISTS `{name}`")


def drop_connections(server_url: str, database: str) -> None:
    """KILL CONNECTION every session on `database` (the job's), as a DBA or a proxy would."""
    admin = create_engine(make_url(server_url).set(database=None))
    with admin.connect() as connection:
        for (session,) in connection.execute(text(
                "SELECT id FROM information_schema.processlist WHERE db = :name"),
                {"name": database}).all():
            connection.execute(text(f"KILL CONNECTION {int(session)}"))
    admin.dispose()


def interrupt(url: str, command: list[str], env: dict, condition, action, log: Path):
    """Start a job; once `condition(connection, database)` holds, call action(); return
    the job's exit status and its stderr lines (TensorFlow's start-up lines aside)."""
    server = make_url(url)
    # Polled from a connection on no database: drop_connections must not see it.
    watcher = create_engine(server.set(database=None))
    with open(log, "w+b") as stderr:  # a file, not a pipe: a full pipe stalls the job
        process = subprocess.Popen([sys.executable, *command, "--quiet"], cwd=ROOT,
                                   env={**env, "DATABASE_URL": url},
                                   stdout=subprocess.DEVNULL, stderr=stderr)
        deadline, met = time.monotonic() + 300, False
        try:
            while process.poll() is None and time.monotonic() < deadline and not met:
                try:
                    with watcher.connect() as connection:
                        met = condition(connection, server.database)
                except Exception:  # noqa: BLE001 - tables not created yet
                    pass
                if met:
                    action()
                else:
                    time.sleep(0.02)
            process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
            watcher.dispose()
        stderr.seek(0)
        output = stderr.read().decode(errors="replace")
    assert met, "the run ended before the interruption: " + output[-2000:]
    lines = [line for line in output.splitlines()
             if line.strip() and not line.startswith(("WARNING: All log messages", "I0000 "))]
    return process.returncode, lines, output


def assert_failed_in_one_line(status, lines, output, program):
    assert status == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"{program}: error: "), output[-3000:]
    assert "database" in lines[0] or "MySQL" in lines[0], lines[0]


def check_dropped_run(status, lines, output, program):
    """A run whose connections the server dropped either fails in one line, or (when
    only idle pooled connections were hit: the pool's pre-ping replaces them) completes
    and says that its lock was lost; the rerun's result is checked either way."""
    if status == 0:
        assert "Traceback" not in output, output[-3000:]
        assert any("lock was lost" in line for line in lines), output[-3000:]
    else:
        assert_failed_in_one_line(status, lines, output, program)


def last_run_outcome(url: str, kind: str) -> str:
    engine = make_engine(url)
    with engine.connect() as connection:
        outcome = connection.execute(select(Job.outcome).where(Job.kind == kind)
                                     .order_by(Job.id.desc()).limit(1)).scalar()
    engine.dispose()
    return outcome


def features_written(count: int):
    def condition(connection, database):
        return connection.execute(text(
            f"SELECT COUNT(*) FROM `{database}`.image_features")).scalar() >= count
    return condition


def lists_written(connection, database):
    return connection.execute(text(
        f"SELECT COUNT(*) FROM `{database}`.neighbour_lists")).scalar() >= 2 * GROUPING_BATCH


@pytest.mark.parametrize("how", ["sigkill", "kill_connection"])
def test_the_feature_job_when_the_database_dies_mid_run(killable_server, how, tmp_path,
                                                        settings_for, extractor):
    root = tmp_path / "images"
    for i in range(12):
        write_jpeg(root / f"batch{i // 4}" / f"{i}.jpg", i)
    reference = f"sqlite:///{tmp_path / 'reference.sqlite3'}"
    run_features(settings_for(database_url=reference, image_root=root, batch_size=2),
                 quiet=True, extractor=extractor)
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "IMAGE_ROOT": str(root), "MODEL_CACHE": str(MODEL_CACHE), "BATCH_SIZE": "2",
           "LOG_LEVEL": "WARNING"}
    with scratch_database(killable_server.url) as url:
        database = make_url(url).database
        action = killable_server.kill if how == "sigkill" else \
            (lambda: drop_connections(killable_server.url, database))
        status, lines, output = interrupt(url, ["create_image_features.py"], env,
                                          features_written(4), action,
                                          tmp_path / "job.log")
        if how == "sigkill":
            try:
                assert_failed_in_one_line(status, lines, output, "create_image_features.py")
            finally:  # the next test, and dropping this database, need the server
                killable_server.start()
        else:
            check_dropped_run(status, lines, output, "create_image_features.py")
        if status:
            assert last_run_outcome(url, "features") != "completed"
        counts = run_features(settings_for(database_url=url, image_root=root, batch_size=2),
                              quiet=True, extractor=extractor)
        assert counts["new"] >= 1 or not status  # the rerun did the rest
        assert last_run_outcome(url, "features") == "completed"
        assert_same(url, reference)


def add_collection(url: str) -> None:
    """Store GROUPING_IMAGES images with random vectors, as the feature job leaves them."""
    rng = np.random.default_rng(7)
    vectors = rng.random((GROUPING_IMAGES, DIMENSIONS), dtype=np.float32)
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as connection:
        paths = [f"archive/{i:05d}.jpg" for i in range(1, GROUPING_IMAGES + 1)]
        connection.execute(insert(Image), [
            {"id": i, "path": path, "path_hash": text_hash(path), "file_name": path[8:],
             "status": OK, "needs_grouping": True} for i, path in enumerate(paths, 1)])
        connection.execute(insert(ImageFeatures), [
            {"image_id": i, "model": MODEL_NAME, "vector": encode_vector(vector)}
            for i, vector in enumerate(vectors, 1)])
    engine.dispose()


def lists(url: str) -> tuple[list, np.ndarray, list]:
    """Return every list entry (space, image, neighbour) in list order, their distances,
    and every list's length and last entry."""
    engine = make_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            select(ImageNeighbour.space, ImageNeighbour.image_id, ImageNeighbour.neighbour_id,
                   ImageNeighbour.distance)
            .order_by(ImageNeighbour.space, ImageNeighbour.image_id, ImageNeighbour.distance,
                      ImageNeighbour.neighbour_id)).all()
        ends = connection.execute(
            select(NeighbourList.space, NeighbourList.image_id, NeighbourList.length,
                   NeighbourList.last_neighbour_id)
            .order_by(NeighbourList.space, NeighbourList.image_id)).all()
    engine.dispose()
    return [tuple(row[:3]) for row in rows], np.array([row[3] for row in rows]), \
        [tuple(end) for end in ends]


@pytest.mark.parametrize("how", ["sigkill", "kill_connection"])
def test_the_grouping_job_when_the_database_dies_mid_run(killable_server, how, tmp_path,
                                                         settings_for):
    reference = f"sqlite:///{tmp_path / 'reference.sqlite3'}"
    add_collection(reference)
    run_grouping(settings_for(database_url=reference, vector_cache=tmp_path / "ref-cache"),
                 quiet=True, block_rows=GROUPING_BATCH)
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "VECTOR_CACHE": str(tmp_path / "cache"), "LOG_LEVEL": "WARNING"}
    with scratch_database(killable_server.url) as url:
        add_collection(url)
        database = make_url(url).database
        action = killable_server.kill if how == "sigkill" else \
            (lambda: drop_connections(killable_server.url, database))
        status, lines, output = interrupt(
            url, ["group_images.py", "--batch-size", str(GROUPING_BATCH)], env,
            lists_written, action, tmp_path / "job.log")
        if how == "sigkill":
            try:
                assert_failed_in_one_line(status, lines, output, "group_images.py")
            finally:  # the next test, and dropping this database, need the server
                killable_server.start()
        else:
            check_dropped_run(status, lines, output, "group_images.py")
        if status:
            assert last_run_outcome(url, "grouping") != "completed"
        run_grouping(settings_for(database_url=url, vector_cache=tmp_path / "cache"),
                     quiet=True, block_rows=GROUPING_BATCH)
        assert last_run_outcome(url, "grouping") == "completed"
        got, want = lists(url), lists(reference)
        assert got[0] == want[0] and got[2] == want[2]
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
