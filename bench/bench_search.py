"""Benchmark the search by an uploaded image against gunicorn + a database of N vectors.

    .venv/bin/python bench/bench_search.py --mariadb-url mysql+mysqlconnector://root@127.0.0.1:3314/ \
        [--images 100000] [--searches 30] [--duration 15] [--workers 2] [--threads 4] \
        [--configs 2:2,0:0]

In one run, against a scratch database of N stored vectors (seeded, with 20-entry
neighbour lists for the first 2,000 images and one completed grouping run):
  1. the model alone: the feature job's decoding + network for one 1-megapixel JPEG, in
     this process (p50/p99 over --searches runs): the baseline;
  2. POST /api/v1/search of that JPEG, one at a time, after the first (which loads):
     p50/p99, and p50 against the model's;
  3. neighbour-page throughput (4 client threads, --duration s) without uploads, then
     while 4 clients upload continuously (a 503 is retried after 50 ms): the share kept;
  4. each worker's RSS, PSS and private memory before any search and after, and the
     size of the shared vector file.
Steps 1-4 run once per --configs entry SEARCH_CONCURRENCY:SEARCH_THREADS (0: automatic,
as the settings resolve it), each with a fresh gunicorn on the same database; the model
alone runs in a fresh process with that entry's threads. Prints a Markdown table per
entry; paste it with the command into bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

from sqlalchemy import insert  # noqa: E402

from db.engine import make_engine, upgrade  # noqa: E402
from db.models import OK, Image, ImageFeatures, ImageNeighbour, Job  # noqa: E402
from db.paths import text_hash as path_hash  # noqa: E402
from db.scratch import scratch_database  # noqa: E402
from numerics.vectors import DIMENSIONS, MODEL_NAME  # noqa: E402

LISTS = 2000  # images with a neighbour list (the pages the clients ask for)
BATCH = 1000


def fill(url: str, n: int) -> None:
    """Write n images with seeded vectors, LISTS lists and a completed grouping run."""
    engine = make_engine(url)
    upgrade(engine)
    rng = np.random.default_rng(14)
    now = datetime(2026, 12, 1)
    with engine.begin() as connection:
        for start in range(1, n + 1, BATCH):
            ids = range(start, min(start + BATCH, n + 1))
            connection.execute(insert(Image), [
                {"id": i, "path": f"bench/{i}.jpg", "path_hash": path_hash(f"bench/{i}.jpg"),
                 "file_name": f"{i}.jpg", "status": OK, "needs_grouping": False,
                 "created_at": now, "updated_at": now} for i in ids])
            vectors = np.abs(rng.normal(0, 0.4, (len(ids), DIMENSIONS))).astype("<f4")
            connection.execute(insert(ImageFeatures), [
                {"image_id": i, "model": MODEL_NAME, "vector": v.tobytes(), "created_at": now}
                for i, v in zip(ids, vectors)])
        for image_id in range(1, min(LISTS, n) + 1):
            others = rng.choice(np.arange(1, n + 1), 21, replace=False)
            others = [int(o) for o in others if o != image_id][:20]
            connection.execute(insert(ImageNeighbour), [
                {"image_id": image_id, "space": 1, "neighbour_id": o, "distance": 1.0 + r}
                for r, o in enumerate(others)])
        connection.execute(insert(Job).values(kind="grouping", started_at=now,
                                              finished_at=now, outcome="completed",
                                              counts="{}"))
    engine.dispose()


def megapixel_jpeg() -> bytes:
    from PIL import Image as PILImage
    picture = PILImage.open(ROOT / "sample_images" / "animals" / "chelsea.jpg").convert("RGB")
    picture = picture.resize((1155, 866))  # 1.0 megapixels
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def percentile(values, q):
    return float(np.percentile(np.array(values) * 1000, q))


def model_alone(data: bytes, rounds: int, settings, threads: int) -> list[float]:
    from model.preprocess import load_upload
    from service.search import extractor
    model = extractor(settings.model_cache, threads)
    times = []
    for round_ in range(rounds + 2):
        started = time.perf_counter()
        array = load_upload(data, settings.max_image_pixels)[0]
        model(array[np.newaxis])
        if round_ >= 2:  # the first two trace and warm up
            times.append(time.perf_counter() - started)
    return times


def request(port: int, method: str, path: str, body: bytes | None = None,
            kind: str | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    headers = {"Content-Type": kind} if kind else {}
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response.status, payload


def memory(pid: int) -> dict[str, float]:
    """Return RSS, PSS and private (USS) memory of a process in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
            values[key] = int(rest.split()[0]) / 1024
    return {"rss": values["Rss"], "pss": values["Pss"],
            "private": values["Private_Clean"] + values["Private_Dirty"]}


def workers(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(c) for c in children]


def throughput(port: int, duration: float, n_lists: int, uploads: bytes | None):
    """Return (neighbour pages per second, uploads answered 200, uploads answered 503)."""
    stop = time.monotonic() + duration
    pages, done, refused = [0] * 4, [0], [0]

    def reader(slot):
        rng = random.Random(slot)
        while time.monotonic() < stop:
            status, _ = request(port, "GET",
                                f"/api/v1/images/{rng.randint(1, n_lists)}/neighbours")
            if status == 200:
                pages[slot] += 1

    def uploader():
        while time.monotonic() < stop:
            status, _ = request(port, "POST", "/api/v1/search", uploads, "image/jpeg")
            if status == 200:
                done[0] += 1
            else:
                refused[0] += 1
                time.sleep(0.05)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    if uploads is not None:
        threads += [threading.Thread(target=uploader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(pages) / duration, done[0], refused[0]


def model_alone_process(rounds: int, threads: int, env: dict) -> list[float]:
    """Return the model-alone times from a fresh process (TensorFlow's threads are fixed
    once it has run in a process)."""
    out = subprocess.run([sys.executable, __file__, "--model-alone", str(threads),
                          "--searches", str(rounds)], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def serve(args, url: str, env: dict, data: bytes, n_lists: int) -> dict:
    """Start gunicorn with env; return the measurements of steps 2-4."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gunicorn = Path(sys.executable).with_name("gunicorn")
    server = subprocess.Popen(
        [str(gunicorn), "--bind", f"127.0.0.1:{port}", "--worker-class", "gthread",
         "--workers", str(args.workers), "--threads", str(args.threads),
         "--timeout", "300", "--no-control-socket", "service:create_app()"],
        cwd=ROOT, env=env)
    try:
        for _ in range(300):
            try:
                if request(port, "GET", "/api/v1/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        before = {pid: memory(pid) for pid in workers(server.pid)}
        pages_alone = throughput(port, args.duration, n_lists, None)[0]
        # Every worker's first search loads the model and maps the vectors.
        first = []
        for _ in range(4 * args.workers):
            started = time.perf_counter()
            status, body = request(port, "POST", "/api/v1/search", data, "image/jpeg")
            assert status == 200, body[:300]
            first.append(time.perf_counter() - started)
        searches = []
        for _ in range(args.searches):
            started = time.perf_counter()
            status, body = request(port, "POST", "/api/v1/search", data, "image/jpeg")
            assert status == 200, body[:300]
            searches.append(time.perf_counter() - started)
        load = os.getloadavg()[0]
        pages_busy, done, refused = throughput(port, args.duration, n_lists, data)
        after = {pid: memory(pid) for pid in workers(server.pid)}
    finally:
        server.terminate()
        server.wait(timeout=30)
    return dict(before=before, after=after, pages_alone=pages_alone, first=first,
                searches=searches, pages_busy=pages_busy, done=done, refused=refused,
                load=load)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mariadb-url", default=os.environ.get("TEST_MARIADB_URL"),
                        help="server URL without a database (default TEST_MARIADB_URL); "
                             "empty: SQLite")
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--searches", type=int, default=30)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--configs", default="0:0",
                        help="comma-separated SEARCH_CONCURRENCY:SEARCH_THREADS entries "
                             "measured one after the other (0: automatic)")
    parser.add_argument("--model-alone", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from runtime.settings import load_settings, search_bounds
    if args.model_alone is not None:  # the child process of model_alone_process
        settings = load_settings()
        print(json.dumps(model_alone(megapixel_jpeg(), args.searches, settings,
                                     args.model_alone)))
        return
    configs = [tuple(int(v) for v in entry.split(":")) for entry in args.configs.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-search-"))
    if args.mariadb_url:
        context = scratch_database(args.mariadb_url, prefix="bench_search")
    else:
        from contextlib import nullcontext
        context = nullcontext(f"sqlite:///{work / 'images.sqlite3'}")
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at start",
          flush=True)
    with context as url:
        started = time.perf_counter()
        fill(url, args.images)
        print(f"filled {args.images} vectors in {time.perf_counter() - started:.0f} s",
              flush=True)
        data = megapixel_jpeg()
        n_lists = min(LISTS, args.images)
        for concurrency, threads in configs:
            resolved = search_bounds(concurrency, threads)
            env = {**os.environ, "DATABASE_URL": url, "SEARCH_CACHE": str(work / "search"),
                   "THUMBNAIL_CACHE": str(work / "thumbs"), "LOG_LEVEL": "WARNING",
                   "SEARCH_CONCURRENCY": str(concurrency), "SEARCH_THREADS": str(threads)}
            alone = model_alone_process(args.searches, resolved[1], env)
            got = serve(args, url, env, data, n_lists)
            files = sorted((work / "search").rglob("pool3.f32"))
            size = files[0].stat().st_size / 2**20 if files else 0.0
            report(args, (concurrency, threads), resolved, alone, got, size)


def report(args, config, resolved, alone, got, size) -> None:
    p50_alone, p50 = percentile(alone, 50), percentile(got["searches"], 50)
    print(f"\n| Measurement (N = {args.images:,}, "
          f"{'MariaDB' if args.mariadb_url else 'SQLite'}, gunicorn gthread "
          f"{args.workers} x {args.threads}; SEARCH_CONCURRENCY:SEARCH_THREADS "
          f"{config[0]}:{config[1]} = {resolved[0]}:{resolved[1]}) | Figure |\n|---|---|")
    print(f"| model alone (decode + network, {resolved[1]} TensorFlow threads), "
          f"1-megapixel JPEG | p50 {p50_alone:.0f} ms, p99 {percentile(alone, 99):.0f} ms |")
    print(f"| POST /api/v1/search, one at a time | p50 {p50:.0f} ms, "
          f"p99 {percentile(got['searches'], 99):.0f} ms = **{p50 / p50_alone:.2f}×** "
          f"the model |")
    print(f"| first searches (load model + vectors per worker) | max {max(got['first']):.1f} s |")
    print(f"| neighbour pages, 4 clients | alone {got['pages_alone']:.0f}/s; with 4 "
          f"uploading clients {got['pages_busy']:.0f}/s = "
          f"**{100 * got['pages_busy'] / got['pages_alone']:.0f} %** kept "
          f"({got['done']} searches answered, {got['refused']} refused 503; load average "
          f"{got['load']:.1f} before) |")
    for pid in got["after"]:
        b, a = got["before"].get(pid), got["after"][pid]
        if b:
            print(f"| worker {pid} memory, before → after searches | RSS {b['rss']:.0f} → "
                  f"{a['rss']:.0f} MiB, PSS {b['pss']:.0f} → {a['pss']:.0f} MiB, private "
                  f"{b['private']:.0f} → {a['private']:.0f} MiB |")
    print(f"| shared vector file (pool3) | {size:.0f} MiB |", flush=True)


if __name__ == "__main__":
    main()
