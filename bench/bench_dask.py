"""Measure both jobs in-process against a Dask LocalCluster on this machine, in one run.

- features: jobs.features.job.run on archive-sized photos (bench_features.make_photos) into
  fresh SQLite files, in-process (the model loaded before the clock) and on the cluster
  (its workers' models loaded by a warm-up run before the clock);
- grouping: jobs.grouping.run.run, a full run over N pool_3-like vectors and then an
  incremental one after M new images, into fresh SQLite files, in-process and on the
  cluster;
- what a cluster costs before any work: starting it, and each worker's first model load.
Every cluster result is checked against the in-process one (vectors and lists bit for
bit). On a machine whose in-process run already uses every core, the cluster can only
add overhead; the ratio shows how much.

    .venv/bin/python bench/bench_dask.py [--workers 2] [--images 64] [--n 20000] [--m 200]
        [--k 100] [--whitened 0] [--rounds 1] [--no-features]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

ROOT = Path(__file__).resolve().parent.parent

from bench_features import files_of, make_photos  # noqa: E402
from bench_grouping import fill_database, pool3_like  # noqa: E402
from db.engine import make_engine  # noqa: E402
from db.models import ImageFeatures, ImageNeighbour  # noqa: E402
from runtime.settings import load_settings  # noqa: E402


def settings_for(url: str, folder: Path, **values):
    return load_settings({"DATABASE_URL": url, "IMAGE_ROOT": str(folder),
                          "VECTOR_CACHE": "", **{k: str(v) for k, v in values.items()}},
                         env={}, env_file=None)


def table(url: str, query) -> list[tuple]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(query)]
    finally:
        engine.dispose()


def features_table(url: str) -> list[tuple]:
    return table(url, select(ImageFeatures.image_id, ImageFeatures.vector)
                 .order_by(ImageFeatures.image_id))


def lists_table(url: str) -> list[tuple]:
    return table(url, select(ImageNeighbour.space, ImageNeighbour.image_id,
                             ImageNeighbour.distance, ImageNeighbour.neighbour_id)
                 .order_by(ImageNeighbour.space, ImageNeighbour.image_id,
                           ImageNeighbour.distance, ImageNeighbour.neighbour_id))


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--long-side", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n", type=int, default=20000, help="vectors of the grouping runs")
    parser.add_argument("--m", type=int, default=200, help="new images of the incremental run")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--whitened", type=int, default=0, help="WHITENED_DIMENSIONS")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-features", action="store_true",
                        help="measure the grouping job only")
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    from jobs.features.job import run as run_features
    from jobs.grouping.run import run as run_grouping
    from model import load_extractor

    work = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    photos = make_photos(args.images, args.long_side)
    folder = work / "photos"
    folder.mkdir()
    for path in files_of(photos, args.images):
        shutil.copy(path, folder / f"{path.parent.name}-{path.name}")
    warm = work / "warm"
    warm.mkdir()
    for path in files_of(photos, 2):
        shutil.copy(path, warm / f"{path.parent.name}-{path.name}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    print(f"workers: {args.workers} processes x 1 thread; photos {args.images} "
          f"(long side {args.long_side}); grouping N = {args.n}, M = {args.m}, k = {args.k}, "
          f"whitened {args.whitened}")

    extractor = load_extractor(load_settings(env={}, env_file=None).model_cache)
    seconds, cluster = timed(LocalCluster, n_workers=args.workers, threads_per_worker=1,
                             processes=True, dashboard_address=None)
    client = Client(cluster)
    print(f"cost: starting the LocalCluster {seconds:.1f} s")
    try:
        # Each worker's first model load (TensorFlow import, weights, tracing): one
        # partition per worker.
        seconds, _ = timed(run_features, settings_for(f"sqlite:///{work}/warm.sqlite3", warm,
                                                      BATCH_SIZE=1),
                           quiet=True, scheduler=client, partition_size=1)
        print(f"cost: first features run on the cluster (2 photos, models loaded) "
              f"{seconds:.1f} s")
        # The engine's numba kernels, compiled or loaded from the cache, in every process.
        vectors = pool3_like(args.n + args.m, seed=17)
        warm_url = f"sqlite:///{work}/warm-grouping.sqlite3"
        fill_database(warm_url, vectors[:300])
        for scheduler in (None, client):
            run_grouping(settings_for(warm_url, folder, WHITENED_DIMENSIONS=0), k=10,
                         quiet=True, full=True, scheduler=scheduler)
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_}")
            times = {}
            for label, scheduler in (() if args.no_features else
                                     (("in-process", None), ("cluster", client))):
                url = f"sqlite:///{work}/features-{label}-{round_}.sqlite3"
                settings = settings_for(url, folder, BATCH_SIZE=args.batch_size)
                times[label], counts = timed(run_features, settings, quiet=True,
                                             extractor=extractor, scheduler=scheduler)
                assert counts["new"] == args.images, counts
                print(f"  features {label:10s} {times[label]:7.1f} s "
                      f"{args.images / times[label]:6.2f} images/s")
            if not args.no_features:
                same = features_table(f"sqlite:///{work}/features-in-process-{round_}"
                                      ".sqlite3") == \
                    features_table(f"sqlite:///{work}/features-cluster-{round_}.sqlite3")
                print(f"  features cluster / in-process: "
                      f"{times['cluster'] / times['in-process']:.2f}x time; vectors bit "
                      f"for bit equal: {same}")
            urls = {label: f"sqlite:///{work}/grouping-{label}-{round_}.sqlite3"
                    for label in ("in-process", "cluster")}
            for url in urls.values():
                fill_database(url, vectors[:args.n])
            for step, rows in (("full", None), ("incremental", args.m)):
                if rows:
                    for url in urls.values():
                        fill_database(url, vectors[args.n:args.n + rows])
                for label, scheduler in (("in-process", None), ("cluster", client)):
                    settings = settings_for(urls[label], folder,
                                            WHITENED_DIMENSIONS=args.whitened)
                    times[label], counts = timed(run_grouping, settings, k=args.k,
                                                 quiet=True, scheduler=scheduler)
                    print(f"  grouping {step:11s} {label:10s} {times[label]:7.1f} s")
                same = lists_table(urls["in-process"]) == lists_table(urls["cluster"])
                print(f"  grouping {step} cluster / in-process: "
                      f"{times['cluster'] / times['in-process']:.2f}x time; lists bit for "
                      f"bit equal: {same}")
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
    finally:
        client.close()
        cluster.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
