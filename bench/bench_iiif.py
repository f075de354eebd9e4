"""IIIF thumbnail-sized requests against today's /thumbnail, cold and warm, in one run.

    .venv/bin/python bench/bench_iiif.py [--data ../shared/data/oxford-flowers102-valtest]
        [--images 400] [--clients 4] [--warm-rounds 3] [--workers 2] [--threads 2]
        [--write]

Registers the first --images photos of --data in a scratch SQLite database (the files are
read where they are), starts gunicorn over it with an empty thumbnail cache and asks, by
--clients keep-alive connections on loopback:
  0. warm-up: 16 other images by both endpoints (not measured);
  1. cold: every image once, /images/<id>/thumbnail?size=256 (the baseline), then
     /iiif/3/<id>/full/!256,256/0/default.jpg (as a IIIF viewer asks for a thumbnail);
     each renders from the JPEG and fills its cache;
  2. warm: the same requests again, --warm-rounds times each, alternating, from the caches.
Prints requests/s, p50/p99 latency and the IIIF/thumbnail ratio of each; --write puts the
table into bench/results/iiif.md.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

from sqlalchemy import insert

from db.engine import make_engine, upgrade
from db.models import OK, Image
from db.paths import text_hash as path_hash

ROOT = Path(__file__).resolve().parent.parent

FLOWERS = ROOT.parent / "shared" / "data" / "oxford-flowers102-valtest"
THUMBNAIL = "/images/{}/thumbnail?size=256"
IIIF = "/iiif/3/{}/full/!256,256/0/default.jpg"
WARM_UP = 16


def register(url: str, image_root: Path, count: int) -> list[int]:
    """Register the first `count` JPEGs under image_root as images; return their ids."""
    files = sorted(image_root.rglob("*.jpg"))[:count]
    engine = make_engine(url)
    upgrade(engine)
    now = datetime.now()
    rows = []
    for number, path in enumerate(files, 1):
        relative = path.relative_to(image_root).as_posix()
        data = path.read_bytes()
        rows.append({"id": number, "path": relative, "path_hash": path_hash(relative),
                     "file_name": path.name, "size": len(data),
                     "content_hash": hashlib.sha256(data).hexdigest(), "status": OK,
                     "needs_grouping": False, "created_at": now, "updated_at": now})
    with engine.begin() as connection:
        connection.execute(insert(Image), rows)
    engine.dispose()
    return [row["id"] for row in rows]


def start_gunicorn(env: dict, workers: int, threads: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--threads", str(threads), "--no-control-socket",
         "--log-level", "warning", "service:create_app()"],
        cwd=ROOT, env={**os.environ, **env})
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/api/v1/healthz", timeout=1).read()
            return process, base
        except OSError:
            time.sleep(0.1)
    process.terminate()
    raise SystemExit("gunicorn did not start")


def drive(base: str, paths: list[str], clients: int) -> dict:
    """Request every path once over `clients` keep-alive connections; return the rate and
    latencies."""
    host, port = base.removeprefix("http://").split(":")
    latencies, failures, lock = [], [], threading.Lock()
    queue = iter(paths)

    def client():
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        mine = []
        while True:
            with lock:
                path = next(queue, None)
            if path is None:
                break
            started = time.perf_counter()
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200 or not body:
                failures.append((path, response.status))
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, e.g. {failures[:3]}")
    latencies.sort()
    return {"rate": len(paths) / elapsed, "p50": latencies[len(latencies) // 2] * 1000,
            "p99": latencies[int(len(latencies) * 0.99)] * 1000}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=FLOWERS)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--warm-rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    image_root = (args.data / "images") if (args.data / "images").is_dir() else args.data
    with tempfile.TemporaryDirectory(prefix="bench-iiif-") as folder:
        folder = Path(folder)
        url = f"sqlite:///{folder / 'images.sqlite3'}"
        ids = register(url, image_root, args.images + WARM_UP)
        # Not measured: the workers' first requests (imports, connections, caches).
        ids, spare = ids[:args.images], ids[args.images:]
        process, base = start_gunicorn(
            {"DATABASE_URL": url, "IMAGE_ROOT": str(image_root),
             "THUMBNAIL_CACHE": str(folder / "thumbnails"), "LOG_LEVEL": "WARNING"},
            args.workers, args.threads)
        try:
            for pattern in (THUMBNAIL, IIIF):
                drive(base, [pattern.format(i) for i in spare], args.clients)
            load = os.getloadavg()[0]
            results = {("thumbnail", "cold"): [drive(base, [THUMBNAIL.format(i) for i in ids],
                                                     args.clients)],
                       ("iiif", "cold"): [drive(base, [IIIF.format(i) for i in ids],
                                                args.clients)]}
            for _ in range(args.warm_rounds):
                for kind, pattern in (("thumbnail", THUMBNAIL), ("iiif", IIIF)):
                    results.setdefault((kind, "warm"), []).append(
                        drive(base, [pattern.format(i) for i in ids], args.clients))
        finally:
            process.terminate()
            process.wait(timeout=10)
    lines = [f"{len(ids)} flower photos (about 750x500 px), gunicorn {args.workers} x "
             f"{args.threads} threads, {args.clients} clients, load average {load:.1f} at "
             "the start",
             "", "| Requests | Cache | req/s | p50 ms | p99 ms | IIIF / thumbnail |",
             "|---|---|---|---|---|---|"]
    for state in ("cold", "warm"):
        medians = {}
        for kind in ("thumbnail", "iiif"):
            runs = results[(kind, state)]
            medians[kind] = {key: statistics.median(run[key] for run in runs)
                             for key in ("rate", "p50", "p99")}
        for kind in ("thumbnail", "iiif"):
            m = medians[kind]
            ratio = (f"{medians['iiif']['rate'] / medians['thumbnail']['rate']:.2f}x"
                     if kind == "iiif" else "")
            name = THUMBNAIL if kind == "thumbnail" else IIIF
            lines.append(f"| `{name.format('<id>')}` | {state} | {m['rate']:.0f} | "
                         f"{m['p50']:.1f} | {m['p99']:.1f} | {ratio} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        command = "nice -n 5 .venv/bin/python bench/bench_iiif.py " + " ".join(argv or sys.argv[1:])
        (ROOT / "bench" / "results" / "iiif.md").write_text(
            "# IIIF thumbnails vs /thumbnail\n\n"
            f"`{command.strip()}`, {datetime.now():%Y-%m-%d %H:%M}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
