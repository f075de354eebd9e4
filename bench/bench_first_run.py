"""A fresh clone's first contact: the demo's jobs on the 27 sample images, before and
after the set-up step's fixes, in one run.

- grouping, cold: `group_images.py` with an empty numba cache (what a fresh clone did:
  numba compiles the engine's loops during the run);
- the set-up step: `python -m numerics.precompile` into that cache (scripts/setup.sh);
- grouping, warm: `group_images.py` again on a fresh copy of the same database;
- feature job no-op rerun: `create_image_features.py` with nothing to do, as it is now
  (the model is loaded only when there is something to extract), and as it was (the model
  loaded first: the same call after load_extractor, in the same interpreter).

Each a fresh interpreter, as a user runs them; the databases and the numba cache live in
a temporary folder, never the repository's.

    .venv/bin/python bench/bench_first_run.py
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_images"


def timed(code: str, environment: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed: {code}\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        environment = {**os.environ, "PYTHONPATH": str(ROOT), "IMAGE_ROOT": str(SAMPLES),
                       "NUMBA_CACHE_DIR": str(folder / "numba-cache"),
                       "DATABASE_URL": f"sqlite:///{folder / 'features.sqlite3'}",
                       "VECTOR_CACHE": "", "DASK_SCHEDULER": ""}
        features = ("import sys, create_image_features; "
                    "sys.exit(create_image_features.main(['--quiet']))")
        timed(features, environment)
        shutil.copy(folder / "features.sqlite3", folder / "cold.sqlite3")
        shutil.copy(folder / "features.sqlite3", folder / "warm.sqlite3")
        grouping = "import sys, group_images; sys.exit(group_images.main(['--quiet']))"
        figures = {
            "grouping, empty numba cache (before)": timed(grouping, {
                **environment, "DATABASE_URL": f"sqlite:///{folder / 'cold.sqlite3'}"}),
        }
        shutil.rmtree(folder / "numba-cache")
        figures["set-up step: python -m numerics.precompile"] = timed(
            "import runpy; runpy.run_module('numerics.precompile', run_name='__main__')",
            environment)
        figures["grouping after the set-up step (after)"] = timed(grouping, {
            **environment, "DATABASE_URL": f"sqlite:///{folder / 'warm.sqlite3'}"})
        figures["feature job no-op rerun, model loaded first (before)"] = timed(
            "import sys, create_image_features\n"
            "from model import load_extractor\n"
            "from runtime.settings import load_settings\n"
            "load_extractor(load_settings().model_cache)\n"
            "sys.exit(create_image_features.main(['--quiet']))", environment)
        figures["feature job no-op rerun (after)"] = timed(features, environment)
    for name, seconds in figures.items():
        print(f"{name:55s} {seconds:7.1f} s")
    names = list(figures)
    print(f"grouping: {figures[names[0]] / figures[names[2]]:.1f}× faster after the set-up "
          f"step; no-op rerun: {figures[names[3]] / figures[names[4]]:.1f}× faster")


if __name__ == "__main__":
    main()
