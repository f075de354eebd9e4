"""Both jobs on a Dask LocalCluster of 2 worker processes: the database equals an
in-process run's, on SQLite and MariaDB; a worker killed mid-run loses nothing; without
a scheduler Dask is not even imported."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from distributed import get_task_stream
from sqlalchemy import func, select

from db.engine import make_engine, upgrade
from db.models import POOL3, WHITENED, ImageFeatures, Job
from jobs.features.job import run as run_features
from features_support import ROOT
from jobs.grouping.run import run as run_grouping
from grouping_support import add_images, change_image, embed, expected_lists, stored_lists, \
    whitened_lists_are_exact
from samples_support import BATCH, SAMPLES, cluster_settings, snapshot

pytestmark = pytest.mark.slow


def job_outcomes(url: str) -> list[tuple[str, str]]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(
                select(Job.kind, Job.outcome).order_by(Job.id))]
    finally:
        engine.dispose()


def test_the_feature_job_on_a_cluster_equals_an_in_process_run(database_url, tmp_path,
                                                               dask_client, in_process):
    counts, tables = in_process
    assert counts["new"] == 27 and len(tables["features"]) == 27
    settings = cluster_settings(database_url, tmp_path)
    # 4 batches per partition: 4 partitions over the 2 workers.
    on_cluster = run_features(settings, quiet=True, scheduler=dask_client,
                              partition_size=4 * BATCH)
    assert on_cluster == counts
    # Every row and every vector bit for bit, ids included.
    assert snapshot(database_url) == tables
    assert job_outcomes(database_url) == [("features", "completed")]
    # A rerun finds nothing to do, as in-process.
    again = run_features(settings, quiet=True, scheduler=dask_client,
                         partition_size=4 * BATCH)
    assert again["unchanged"] == 27 and again["new"] == 0


def test_a_worker_killed_during_the_feature_job_loses_nothing(sqlite_url, tmp_path,
                                                              dask_client, in_process):
    _, tables = in_process
    settings = cluster_settings(sqlite_url, tmp_path)
    result: dict = {}

    def job():
        try:
            # One batch per partition: 14 partitions, several queued on each worker.
            result["counts"] = run_features(settings, quiet=True, scheduler=dask_client,
                                            partition_size=BATCH)
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            result["error"] = error

    before = dask_client.run(os.getpid)
    thread = threading.Thread(target=job)
    thread.start()
    killed = None
    deadline = time.monotonic() + 300
    # Kill the first worker seen with partitions assigned, as a node failure would. Not
    # waiting for a written batch first: the run could end in between (it did in CI).
    while thread.is_alive() and time.monotonic() < deadline and killed is None:
        busy = [address for address, keys in dask_client.processing().items() if keys]
        if busy:
            killed = before[busy[0]]
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.02)
    thread.join(600)
    assert killed is not None, "the run ended before a worker could be killed"
    assert "error" not in result, result.get("error")
    # The nanny started a new worker process in place of the killed one.
    assert killed not in dask_client.run(os.getpid).values()
    assert result["counts"]["new"] == 27 and result["counts"]["failed"] == 0
    assert snapshot(sqlite_url) == tables
    assert job_outcomes(sqlite_url) == [("features", "completed")]


def test_the_grouping_job_on_a_cluster_equals_an_in_process_run(two_databases, tmp_path,
                                                                dask_client, monkeypatch):
    from numerics import whitening
    monkeypatch.setattr(whitening, "MIN_IMAGES", 4)  # learn the space from 60 images
    rng = np.random.default_rng(17)
    small = rng.integers(-3, 4, size=(60, 6)).astype(np.float32)
    small[10] = small[11]  # an exact duplicate: distance 0 and a tie
    vectors = embed(small)
    engines, settings = [], []
    for name, url in zip("ab", two_databases):
        engine = make_engine(url)
        upgrade(engine)
        engines.append(engine)
        settings.append(cluster_settings(url, tmp_path / name, WHITENED_DIMENSIONS=4))
        add_images(engine, vectors)
    try:
        k = 7
        # Small blocks: many tasks per space, written in order.
        local = run_grouping(settings[0], k=k, quiet=True, block_rows=8)
        with get_task_stream(dask_client) as stream:
            remote = run_grouping(settings[1], k=k, quiet=True, block_rows=8,
                                  scheduler=dask_client)
        assert remote["spaces"][WHITENED]["mode"] == "full"
        # Symmetry on the cluster too: 8 row blocks, each of the 8 · 9 / 2 distance
        # blocks on and above the diagonal computed once, and 8 rankings, per space
        # (pool3, whitened and augmented).
        assert len(remote["spaces"]) == 3
        keys = [str(task["key"]) for task in stream.data]
        assert sum(key.startswith("block_candidates-") for key in keys) == 3 * 36
        assert sum(key.startswith("rank_rows-") for key in keys) == 3 * 8
        _assert_same(engines, k, local, remote)
        # An incremental run: new, changed and removed images, merged into the lists.
        new = embed(rng.integers(-3, 4, size=(9, 6)).astype(np.float32))
        for engine in engines:
            add_images(engine, new)
            change_image(engine, 3, vector=embed(np.full((1, 6), 2.0, np.float32))[0])
            change_image(engine, 5, status="missing")
        local = run_grouping(settings[0], k=k, quiet=True, block_rows=8)
        remote = run_grouping(settings[1], k=k, quiet=True, block_rows=8,
                              scheduler=dask_client)
        assert remote["spaces"][POOL3]["mode"] != "full"
        assert remote["spaces"][POOL3]["lists_merged"] > 0
        _assert_same(engines, k, local, remote)
    finally:
        for engine in engines:
            engine.dispose()


def _assert_same(engines, k, local, remote):
    hidden = ("seconds", "vector_cache", "spaces")
    assert {key: v for key, v in local.items() if key not in hidden} == \
        {key: v for key, v in remote.items() if key not in hidden}
    for space in (POOL3, WHITENED):
        # All but the token naming the learned projection, its time of learning.
        mine, theirs = ({key: v for key, v in counts["spaces"][space].items()
                         if key != "projection"} for counts in (local, remote))
        assert mine == theirs, (mine, theirs)
    for space in (POOL3, WHITENED):
        # Bit for bit: the stored float64 distances compare equal, entry by entry.
        assert stored_lists(engines[0], space) == stored_lists(engines[1], space)
    # And both are the float64 brute force's lists.
    assert stored_lists(engines[1]) == expected_lists(engines[1], k)
    whitened_lists_are_exact(engines[1], k)


def test_without_a_scheduler_dask_is_not_imported(tmp_path):
    script = (
        "import sys, create_image_features, group_images\n"
        "assert create_image_features.main(['--quiet', '--limit', '3']) == 0\n"
        "assert group_images.main(['--quiet']) == 0\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('dask', 'distributed', 'dask_jobqueue'))\n"
        "print('LOADED', loaded)\n")
    environment = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'images.sqlite3'}",
                   "IMAGE_ROOT": str(SAMPLES), "DASK_SCHEDULER": "",
                   "VECTOR_CACHE": "", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOADED []" in done.stdout, done.stdout
    engine = make_engine(environment["DATABASE_URL"])
    try:
        with engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(ImageFeatures)) \
                .scalar_one() == 3
    finally:
        engine.dispose()


def test_the_slurm_example_writes_a_job_script_for_this_checkout():
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "slurm_cluster.py"), "--print-script",
         "--cores", "16", "--memory", "64GB", "--queue", "normal", "--processes", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "DATABASE_URL": "sqlite:///:memory:"})
    assert done.returncode == 0, done.stderr[-2000:]
    script = done.stdout
    assert "#SBATCH --cpus-per-task=16" in script and "#SBATCH -p normal" in script
    assert f"export PYTHONPATH={ROOT}" in script
    # This Python, a dask worker with 2 processes of 8 threads, pointed at the scheduler.
    assert f"{sys.executable} -m distributed.cli.dask_worker tcp://" in script
    assert "--nthreads 8" in script and "--nworkers 2" in script


def test_an_unreachable_scheduler_stops_the_job_with_one_line(sqlite_url, tmp_path,
                                                             monkeypatch):
    from runtime import distribute
    from runtime.jobrun import JobError
    monkeypatch.setattr(distribute, "CONNECT_TIMEOUT", "2s")
    engine = make_engine(sqlite_url)
    upgrade(engine)
    add_images(engine, embed(np.eye(6, dtype=np.float32)))
    settings = cluster_settings(sqlite_url, tmp_path)
    with pytest.raises(JobError, match="cannot connect to the Dask scheduler "
                                       "tcp://127.0.0.1:9"):
        run_grouping(settings, k=3, quiet=True, scheduler="tcp://127.0.0.1:9")
    with pytest.raises(JobError, match="local:N needs a number of workers"):
        run_grouping(settings, k=3, quiet=True, scheduler="local:many")
    assert stored_lists(engine) == {}
    engine.dispose()
