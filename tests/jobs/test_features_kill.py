"""SIGKILL the feature job at several points; the rerun must end where an unkilled run does.

The killed runs are real processes of create_image_features.py; the test watches the
database and kills when it reaches a point: right after the first rows are registered,
in the middle of the model batches, and right after files were marked missing in an
incremental run. The reference is the same sequence of runs, never interrupted.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select, update

from db.engine import make_engine
from db.models import Image, Job
from jobs.features.job import run
from features_support import ROOT, MODEL_CACHE, assert_same, image_rows, write_jpeg


def kill_when(url, root, condition, log, timeout=120.0):
    """Start the job, SIGKILL it once `condition(connection)` holds; return the exit status."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "DATABASE_URL": url, "IMAGE_ROOT": str(root), "MODEL_CACHE": str(MODEL_CACHE),
           "BATCH_SIZE": "2", "LOG_LEVEL": "WARNING"}
    # stderr to a file, not a pipe: a full pipe would stall the job, not the test.
    stderr = open(log, "w+b")
    process = subprocess.Popen([sys.executable, "create_image_features.py", "--quiet"],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    engine = make_engine(url)
    deadline = time.monotonic() + timeout
    met = False
    try:
        while process.poll() is None and time.monotonic() < deadline:
            try:
                with engine.connect() as connection:
                    if condition(connection):
                        process.send_signal(signal.SIGKILL)
                        met = True
                        break
            except Exception:  # noqa: BLE001 - tables not created yet
                pass
            time.sleep(0.02)
        else:
            process.kill()
        process.wait(timeout=60)
        stderr.seek(0)
        assert met, "the run ended before the kill point: " + stderr.read().decode()[-2000:]
        return process.returncode, stderr.read().decode(errors="replace")
    finally:
        stderr.close()
        engine.dispose()


def count(connection, *where):
    return connection.execute(select(func.count()).select_from(Image).where(*where)).scalar()


def ids(url):
    return {path: row["id"] for path, row in image_rows(url).items()}


def clear_needs_grouping(url):
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(update(Image).values(needs_grouping=False))
    engine.dispose()


def assert_ids_kept(before, after):
    assert {p: after[p] for p in before} == before
    assert len(set(after.values())) == len(after)


@pytest.mark.slow
def test_killed_runs_finish_like_an_uninterrupted_run(settings_for, database_url, tmp_path,
                                                      extractor):
    root = tmp_path / "images"
    for i in range(10):
        write_jpeg(root / f"batch{i // 4}" / f"{i}.jpg", i)
    reference = f"sqlite:///{tmp_path / 'reference.sqlite3'}"
    log = tmp_path / "killed-run.log"

    def finish(url):
        return run(settings_for(database_url=url, image_root=root, batch_size=2),
                   quiet=True, extractor=extractor)

    finish(reference)
    status, err = kill_when(database_url, root, lambda c: count(c) > 0, log)
    assert status == -signal.SIGKILL, err
    registered = ids(database_url)
    assert registered  # killed after the pending rows were committed
    status, err = kill_when(database_url, root, lambda c: count(c, Image.status == "ok") >= 4,
                             log)
    assert status == -signal.SIGKILL, err
    assert_ids_kept(registered, ids(database_url))
    assert finish(database_url)["new"] >= 1  # the rerun finishes the job
    assert_same(database_url, reference)
    first = ids(database_url)
    assert_ids_kept(registered, first)

    # An incremental run killed after it marked the gone file missing.
    for url in (reference, database_url):
        clear_needs_grouping(url)
    (root / "batch0" / "1.jpg").unlink()
    write_jpeg(root / "batch0" / "2.jpg", 102)
    write_jpeg(root / "batch2" / "9.jpg", 109)
    for i in range(10, 13):
        write_jpeg(root / "batch3" / f"{i}.jpg", i)
    finish(reference)
    status, err = kill_when(database_url, root,
                            lambda c: count(c, Image.status == "missing") >= 1, log)
    assert status == -signal.SIGKILL, err
    finish(database_url)
    assert_same(database_url, reference)
    assert_ids_kept(first, ids(database_url))
    assert finish(database_url)["unchanged"] == 12

    engine = make_engine(database_url)
    with engine.connect() as connection:
        outcomes = connection.execute(select(Job.outcome).order_by(Job.id)).scalars().all()
    engine.dispose()
    # A killed run cannot record its end: its row stays 'running'.
    assert outcomes == ["running", "running", "completed", "running", "completed",
                        "completed"]
