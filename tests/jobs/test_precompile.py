"""The set-up step's compiled loops: after `python -m numerics.precompile` (run by
scripts/setup.sh and the Dockerfile) the grouping job compiles nothing."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from db.engine import make_engine, upgrade
from features_support import ROOT
from grouping_support import add_images, embed, job_rows


def cache_files(folder) -> dict:
    """Return each file of numba's cache with its size and modification time."""
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in folder.rglob("*") if path.is_file()}


def run_python(arguments, environment):
    done = subprocess.run([sys.executable, *arguments], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]


def test_after_the_setup_step_the_grouping_job_compiles_nothing(tmp_path):
    cache = tmp_path / "numba-cache"
    url = f"sqlite:///{tmp_path / 'images.sqlite3'}"
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT),
                   "DATABASE_URL": url, "VECTOR_CACHE": "", "DASK_SCHEDULER": ""}
    run_python(["-m", "numerics.precompile"], environment)
    compiled = cache_files(cache)
    assert sum(name.endswith(".nbc") for name in compiled) >= 7  # one per loop at least

    engine = make_engine(url)
    upgrade(engine)
    rng = np.random.default_rng(5)
    # Enough images to learn the whitened space: its projection is compiled too.
    add_images(engine, embed(rng.random((230, 40), dtype=np.float32)))
    grouping = ["-c", "import sys, group_images; sys.exit(group_images.main(['--quiet']))"]
    run_python(grouping, environment)  # a full run in every space
    add_images(engine, embed(rng.random((7, 40), dtype=np.float32)))
    run_python(grouping, environment)  # an incremental one
    runs = job_rows(engine)
    engine.dispose()
    assert [(row.outcome, sorted(row.counts["spaces"])) for row in runs] == \
        [("completed", ["augmented", "pool3", "whitened"])] * 2
    assert [row.counts["spaces"]["whitened"]["mode"] for row in runs] == \
        ["full", "incremental"]
    # numba writes an index and an object file for every loop it compiles: none new,
    # none rewritten.
    assert cache_files(cache) == compiled
