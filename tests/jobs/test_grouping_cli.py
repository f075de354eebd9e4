"""group_images.py as cron runs it: the command line, exit codes, and a kill -9.

main(argv) runs in this process; the first test and the kill -9 run the real command."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from db.engine import make_engine, upgrade
from db.locks import run_lock
from db.models import POOL3, WHITENED, ImageNeighbour
from numerics.engine import ExactIndex
from db.spaces import stored_whitening
from grouping_support import add_images, embed, job_rows, pool3, stored_lists

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "group_images.py"
COMMAND = str(ROOT / SCRIPT)


# The scripts' vector caches, away from the project's data folder.
_VECTOR_CACHE = tempfile.TemporaryDirectory(prefix="test-vector-cache-")


def script_env(database_url: str) -> dict:
    env = {key: value for key, value in os.environ.items()
           if key not in ("DATABASE_URL", "NEIGHBOURS_K", "GROUPING_MEMORY_MB")}
    env["DATABASE_URL"] = database_url
    env["VECTOR_CACHE"] = _VECTOR_CACHE.name
    return env


def run_script(run_main, *args, database_url):
    """Run main(argv) in this process with these settings only."""
    return run_main(SCRIPT, *args, cwd=ROOT, database_url=database_url,
                    vector_cache=_VECTOR_CACHE.name)


def run_command(*args, database_url, timeout=120):
    return subprocess.run([sys.executable, COMMAND, *args], env=script_env(database_url),
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_dry_run_then_run_then_summary(sqlite_url):
    engine = make_engine(sqlite_url)
    upgrade(engine)
    add_images(engine, embed(np.eye(4, dtype=np.float32)))
    dry = run_command("--dry-run", "--k", "2", database_url=sqlite_url)
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout and "lists_full 4" in dry.stdout
    assert stored_lists(engine) == {}
    done = run_command("--k", "2", "--quiet", database_url=sqlite_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("done: ") and "lists_written 4" in done.stdout
    assert done.stderr == ""  # --quiet: no progress lines
    assert len(stored_lists(engine)) == 4


def test_dry_run_on_a_missing_sqlite_file_creates_nothing(tmp_path, run_main):
    path = tmp_path / "new" / "images.sqlite3"
    dry = run_script(run_main, "--dry-run", database_url=f"sqlite:///{path}")
    assert dry.returncode == 0, dry.stderr
    assert not path.parent.exists()
    assert "lists_full 0" in dry.stdout and "note: no database file" in dry.stdout


def test_legacy_positional_form(mariadb_url, run_main):
    url = make_url(mariadb_url)
    engine = make_engine(mariadb_url)
    upgrade(engine)
    add_images(engine, embed(np.eye(3, dtype=np.float32)))
    # DATABASE_URL points elsewhere: the positional arguments win.
    done = run_script(run_main, url.host, str(url.port), url.database, url.username,
                      url.password or "", "--k", "1", database_url="sqlite:///nowhere/x")
    assert done.returncode == 0, done.stderr
    assert len(stored_lists(engine)) == 3


@pytest.mark.parametrize("args, code, message", [
    (["h", "1", "n"], 2, "got 3 arguments"),
    (["--k", "0"], 2, "--k must be at least 1"),
    (["h", "port", "n", "u", "p"], 1, "database port must be a number, got 'port'"),
])
def test_bad_command_lines_fail_with_one_line(sqlite_url, args, code, message, run_main):
    result = run_script(run_main, *args, database_url=sqlite_url)
    assert result.returncode == code and message in result.stderr


def test_unreachable_database_fails_with_one_line(sqlite_url, run_main):
    result = run_script(run_main, "127.0.0.1", "1", "images", "jobs", "secret-word",
                        database_url=sqlite_url)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("group_images.py: error:")
    assert "secret-word" not in result.stderr


@pytest.mark.slow
def test_kill_9_while_writing_then_rerun_completes(database_url, run_main):
    engine = make_engine(database_url)
    upgrade(engine)
    rng = np.random.default_rng(11)
    vectors = np.maximum(rng.normal(size=(1200, 2048)), 0).astype(np.float32)
    ids = add_images(engine, vectors)
    process = subprocess.Popen([sys.executable, COMMAND, "--k", "10", "--batch-size", "40",
                                "--quiet"], env=script_env(database_url), cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    count = select(func.count()).select_from(ImageNeighbour)
    deadline = time.monotonic() + 120
    with engine.connect() as connection:
        while connection.execute(count).scalar_one() == 0 and time.monotonic() < deadline:
            connection.rollback()  # a fresh snapshot on MariaDB's REPEATABLE READ
            time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    written = len(stored_lists(engine))
    assert 0 < written < len(ids), "the kill did not land while lists were written"
    (outcome, counts), = job_rows(engine)
    assert outcome == "running"

    rerun = run_script(run_main, "--k", "10", "--batch-size", "40", "--quiet",
                       database_url=database_url)
    assert rerun.returncode == 0, rerun.stderr
    outcome, counts = job_rows(engine)[-1]
    assert outcome == "completed" and pool3(counts)["mode"] == "resume"
    assert pool3(counts)["lists_full"] < len(ids)  # taken up where it stopped, not redone
    # The learned space was not reached before the kill: computed whole by the rerun.
    assert counts["spaces"][WHITENED]["mode"] == "full"
    projection, _ = stored_whitening(engine)
    for space, space_vectors in ((POOL3, vectors), (WHITENED, projection.apply(vectors))):
        want_ids, want_distances = ExactIndex(space_vectors, ids).search(space_vectors,
                                                                         ids, 10)
        lists = stored_lists(engine, space)
        assert set(lists) == set(ids)
        for row, image_id in enumerate(ids):
            assert lists[image_id] == (want_ids[row].tolist(),
                                       want_distances[row].tolist())
    engine.dispose()


def test_a_second_run_fails_with_one_line_while_the_first_works(database_url, run_main):
    engine = make_engine(database_url)
    upgrade(engine)
    add_images(engine, embed(np.eye(3, dtype=np.float32)))
    with run_lock(engine, "grouping"):  # a first run still working
        busy = run_script(run_main, database_url=database_url)
    assert busy.returncode == 1
    assert busy.stderr.strip().splitlines() == [
        "group_images.py: error: another group_images.py run is working on this database; "
        "nothing was changed"]
    assert stored_lists(engine) == {}
    assert run_script(run_main, database_url=database_url).returncode == 0
    assert len(stored_lists(engine)) == 3
    engine.dispose()
