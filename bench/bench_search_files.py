"""The search files of a new grouping run: built from the previous run's files (now) vs
read whole from the database (before), on MariaDB, after --new new images among N.

    .venv/bin/python bench/bench_search_files.py [--images 100000] [--new 1000]
        [--before-tree PATH] [--mariadb-url mysql+mysqlconnector://root@127.0.0.1:3307/]

In a scratch database (dropped at the end): N images with pool_3-like vectors, a full
grouping run (the whitened space only, as bench_million.py --without-pool3), the search
files of that run; then --new images more, an incremental grouping run, and the new
run's files built three ways, each in a fresh process: from the previous run's files
(this code), afresh with this code, and afresh with the code of --before-tree (the
service before this change). The files of the first two are compared byte for byte.
"""
from __future__ import annotations

import argparse
import filecmp
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from bench_million import WITHOUT_POOL3, add_new_images, run_process  # noqa: E402
from bench_grouping import pool3_like  # noqa: E402
from db.engine import make_engine, upgrade  # noqa: E402
from db.scratch import scratch_database  # noqa: E402

GROUP = (WITHOUT_POOL3 + "from jobs.grouping.run import run\n"
         "from runtime.settings import load_settings\n"
         "run(load_settings(), quiet=True)\n")
COPIED = "from the previous run's files"
# Build the files of the newest completed run into SEARCH_CACHE, as a worker's first search.
BUILD = ("from db.engine import make_engine\n"
         "from runtime.settings import load_settings\n"
         "from service.vector_store import VectorStore\n"
         "settings = load_settings()\n"
         "engine = make_engine(settings.database_url, read_only=True)\n"
         "store = VectorStore(settings.search_cache / 'vectors', settings.database_url, engine)\n"
         "with engine.connect() as connection:\n"
         "    print(store.current(connection).job_id)\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mariadb-url", default=os.environ.get(
        "TEST_MARIADB_URL", "mysql+mysqlconnector://root@127.0.0.1:3307/"))
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=1000)
    parser.add_argument("--before-tree", type=Path)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-search-files-"))
    print(f"N = {args.images:,}, {args.new:,} new; load average {os.getloadavg()[0]:.2f}")
    with scratch_database(args.mariadb_url, prefix="bench_search_files") as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        vectors = pool3_like(args.images + args.new, seed=27)
        add_new_images(url, vectors[:args.images], prefix="old")
        environment = {**os.environ, "DATABASE_URL": url, "AUGMENTED_K": "0",
                       "VECTOR_CACHE": str(folder / "vector-cache"), "DASK_SCHEDULER": "",
                       "LOG_LEVEL": "WARNING"}
        kept = {**environment, "SEARCH_CACHE": str(folder / "kept")}
        run_process(GROUP, environment)
        seconds, rss, _ = run_process(BUILD, kept)
        print(f"  first run's files, afresh: {seconds:.1f} s, peak RSS {rss:,.0f} MiB")
        add_new_images(url, vectors[args.images:], prefix="new")
        run_process(GROUP, environment)
        figures = {}
        for name, tree, cache in ((COPIED, ROOT, "kept"),
                                  ("afresh", ROOT, "fresh"),
                                  ("afresh, before", args.before_tree, "before")):
            if tree is None:
                continue
            seconds, rss, out = run_process(BUILD, {**environment,
                                                    "SEARCH_CACHE": str(folder / cache)},
                                            tree)
            figures[name] = seconds
            print(f"  new run's files, {name}: {seconds:.1f} s, peak RSS {rss:,.0f} MiB",
                  flush=True)
        job = out.strip() or "?"
        kept_run = next((folder / "kept" / "vectors").glob(f"*/run-{job}"))
        fresh_run = next((folder / "fresh" / "vectors").glob(f"*/run-{job}"))
        names = sorted(p.name for p in fresh_run.iterdir())
        match, mismatch, errors = filecmp.cmpfiles(kept_run, fresh_run, names, shallow=False)
        print(f"  files equal byte for byte: {match}; different: {mismatch + errors}")
        base = figures.get("afresh, before", figures["afresh"])
        print(f"  speed-up against {'before' if args.before_tree else 'afresh'}: "
              f"{base / figures[COPIED]:.1f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
