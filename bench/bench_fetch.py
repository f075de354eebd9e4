"""Measure the feature job on IIIF images fetched from a local server against the same
files read from disk, in one run; and with 50 ms added per request, how much of that
latency the fetch concurrency hides.

The sample images are served REPEAT times under distinct ids (tests/iiif_server_support.py: a
static level-0 layout) and copied REPEAT times into a temporary IMAGE_ROOT; each variant
runs jobs.features.job.run into a fresh SQLite database with the same loaded model. The
job's read-and-decode pool has max(DECODE_THREADS, IIIF_FETCH_CONCURRENCY) threads, so
each IIIF variant is compared with a disk run of the same pool size (8 threads, then 1).
A fetch-only pass (the Fetcher over a thread pool, no model) shows the network side
alone. Each server (no latency; LATENCY per request) runs in its own process, so that
serving does not take the job's GIL.

    .venv/bin/python bench/bench_fetch.py [--repeat 4] [--latency 0.05] [--rounds 2]
"""
from __future__ import annotations

import argparse
import multiprocessing
import shutil
import threading
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from iiif_server_support import IiifServer, manifest_v3  # noqa: E402
from jobs.features.job import run as run_features  # noqa: E402
from jobs.iiif_import.job import run as run_import  # noqa: E402
from runtime.fetch import FetchOptions, Fetcher  # noqa: E402
from runtime.settings import load_settings  # noqa: E402

MODEL_CACHE = ROOT / "data" / "inception_v3_2015_12_05.weights.h5"


def settings(work: Path, name: str, image_root: Path, **values):
    return load_settings({"DATABASE_URL": f"sqlite:///{work / name}.sqlite3",
                          "IMAGE_ROOT": str(image_root), "MODEL_CACHE": str(MODEL_CACHE),
                          "DECODE_THREADS": "1", "BATCH_SIZE": "32",
                          **{k.upper(): str(v) for k, v in values.items()}}, env={},
                         env_file=None)


def timed_features(config, extractor) -> tuple[float, dict]:
    start = time.perf_counter()
    counts = run_features(config, quiet=True, extractor=extractor)
    return time.perf_counter() - start, counts


def serve(files: dict[str, Path], latency: float, answer) -> None:
    """Serve `files` by id with `latency` per request; put (base, manifest URL) on
    `answer`, then serve until terminated (a child process)."""
    with IiifServer() as server:
        server.state.images.update({i: p.read_bytes() for i, p in files.items()})
        server.state.latency = latency
        answer.put((server.base, server.publish(
            "/manifests/all.json", manifest_v3(server, "all", [(i, i) for i in files]))))
        threading.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    files = sorted(p for p in (ROOT / "sample_images").rglob("*.jpg"))
    work = Path(tempfile.mkdtemp(prefix="bench-fetch-"))
    disk, empty = work / "disk", work / "empty"
    empty.mkdir()
    served = {}
    for copy in range(args.repeat):
        for index, path in enumerate(files):
            target = disk / f"c{copy}" / f"{index:02d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            served[f"c{copy}i{index:02d}"] = target
    n = len(served)
    print(f"{n} images ({args.repeat} x {len(files)} samples), "
          f"{sum(p.stat().st_size for p in served.values()) / 2 ** 20:.1f} MiB")
    context = multiprocessing.get_context("fork")  # before TensorFlow is loaded
    servers, manifests = [], {}
    for latency in (0.0, args.latency):
        answer = context.Queue()
        process = context.Process(target=serve, args=(served, latency, answer), daemon=True)
        process.start()
        servers.append(process)
        manifests[latency] = answer.get(timeout=60)
    from model import load_extractor
    extractor = load_extractor(MODEL_CACHE)
    ms = f"+{args.latency * 1000:.0f} ms"
    # (label, latency, DECODE_THREADS, fetch concurrency = per host); the job's pool has
    # max(DECODE_THREADS, IIIF_FETCH_CONCURRENCY) threads, so each IIIF variant is
    # compared with the disk run of the same pool above it.
    variants = [("disk, 8 threads", 0.0, 8, None),
                ("iiif, no latency, 8 in flight", 0.0, 1, 8),
                (f"iiif, {ms}, 8 in flight", args.latency, 1, 8),
                ("disk, 1 thread", 0.0, 1, None),
                ("iiif, no latency, 1 in flight", 0.0, 1, 1),
                (f"iiif, {ms}, 1 in flight", args.latency, 1, 1)]
    try:
        timed_features(settings(work, "warm-up", disk, decode_threads=8), extractor)
        for round_ in range(args.rounds):
            print(f"\nround {round_ + 1}: feature job, images/s")
            base = None
            for number, (label, latency, threads, fetch) in enumerate(variants):
                name = f"r{round_}v{number}"
                if fetch is None:
                    config = settings(work, name, disk, decode_threads=threads)
                    base = None
                else:
                    config = settings(work, name, empty, decode_threads=threads,
                                      iiif_fetch_concurrency=fetch,
                                      iiif_fetch_per_host=fetch)
                    run_import(config, manifests[latency][1])
                seconds, counts = timed_features(config, extractor)
                assert counts["new"] == n and counts["failed"] == 0, counts
                rate = n / seconds
                base = base or rate
                print(f"  {label:35s} {rate:7.2f} img/s  {rate / base:5.2f}x the disk run "
                      f"above  ({seconds:.1f} s)")
            print(f"round {round_ + 1}: fetch only (no model), {ms} per request")
            for concurrency in (1, 4, 8, 16):
                fetcher = Fetcher(FetchOptions(concurrency=concurrency, per_host=concurrency))
                base_url = manifests[args.latency][0]
                start = time.perf_counter()
                with ThreadPoolExecutor(concurrency) as pool:
                    got = list(pool.map(lambda i: fetcher.get(
                        f"{base_url}/iiif/{i}/full/max/0/default.jpg"), served))
                seconds = time.perf_counter() - start
                assert all(g.data for g in got)
                print(f"  {concurrency:2d} in flight: {n / seconds:7.1f} img/s ({seconds:.2f} s; "
                      f"the latency alone, one at a time: {n * args.latency:.1f} s)")
    finally:
        for process in servers:
            process.terminate()
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
