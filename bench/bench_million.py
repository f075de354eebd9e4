"""The whole system at N images on MariaDB, part by part, against the same parts at a
smaller N in the same invocation: each part's time and its ratio (does it grow as it
should: N² for a full grouping run, N for writes and an incremental run, flat for
look-ups?).

    .venv/bin/python bench/bench_million.py \
        [--mariadb-url mysql+mysqlconnector://root@127.0.0.1:3307/] [--sizes 10000,40000]
        [--new 1000] [--duration 10] [--whitened 256] [--augmented 0] [--without-pool3]
        [--pool3-whole-up-to 100000] [--before-tree PATH]

For each N, in a scratch database on the server (dropped at the end):
 1. fill: N tiny files named .jpg in a temporary folder (never opened: unchanged files
    are not read) registered as images (bench_noop_rerun.register_all), and N
    pool_3-like vectors (bench_grouping.pool3_like_parts) as their features;
 2. full grouping run (group_images.py's job in a fresh process: pool3 and whitened
    unless --whitened 0, the augmented space with --augmented K; --without-pool3: the
    whitened space only, pool3 as if it were off): time, peak RSS;
 3. pool3's engine apart, on the vectors the full run left in its local copy: a sample
    of 2,048 rows against all N (a full run's pool3 engine extrapolated from it), and up
    to --pool3-whole-up-to images search_all whole, to check that extrapolation;
 4. no-op reruns of both jobs (fresh processes): the feature job over the N files, the
    grouping job with nothing flagged (asserted to take the short path), and with
    --before-tree the grouping no-op rerun of that checkout's code (the fix's before);
 5. incremental grouping run after --new new images;
 6. report_duplicates.py (fresh process): time;
 7. the database's size on disk (information_schema: data + indexes) per image;
 8. the service (gunicorn, 2 workers × 4 threads, as the Dockerfile): wrk at random ids
    on every read endpoint that works without real JPEGs (ENDPOINTS): req/s, p50, p99;
    browse (/api/v1/browse in path order: page 1 and a page after the 90 % id; median
    of 20); search by upload (a sample JPEG, POST /api/v1/search, whitened; the first
    call, which loads the model and maps the vector file, apart; median of 5 after),
    the workers' RSS after it all.
The machine's load average is printed at the start and end of each N.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import insert, select, text

ROOT = Path(__file__).resolve().parent.parent

from bench_grouping import pool3_like_parts  # noqa: E402
from bench_noop_rerun import make_files, register_all  # noqa: E402
from bench_search import memory, workers  # noqa: E402
from bench_service import WRK_LUA, free_port, run_wrk, start_gunicorn, stop  # noqa: E402
from db.engine import make_engine  # noqa: E402
from db.models import Image, ImageFeatures  # noqa: E402
from db.scratch import scratch_database  # noqa: E402
from numerics.vectors import MODEL_NAME, encode_vector  # noqa: E402

# Every read endpoint that works on files of 4 bytes (no thumbnails, files or IIIF
# images: those need real JPEGs, bench/bench_iiif_thumbnails.py), at random ids; {space}
# is the space the lists were computed in.
ENDPOINTS = {"baseline: /api/v1/healthz": "/api/v1/healthz?%d",
             "/api/v1/images/<id>": "/api/v1/images/%d",
             "/api/v1/images/<id>/neighbours": "/api/v1/images/%d/neighbours?space={space}",
             "/api/v1/images/<id>/neighbours?limit=100":
                 "/api/v1/images/%d/neighbours?space={space}&limit=100",
             "/api/v1/images/<id>/features": "/api/v1/images/%d/features",
             "/api/v1/stats": "/api/v1/stats?%d",
             "original /image_count": "/image_count?%d",
             "original /image_name/<id>": "/image_name/%d",
             "original /image_name_and_neighbours/<id>": "/image_name_and_neighbours/%d",
             "original /image_fingerprint/<id> (SVG plot)": "/image_fingerprint/%d",
             "/iiif/manifests/<id>/neighbours": "/iiif/manifests/%d/neighbours?space={space}",
             "the image page (HTML)": "/images/%d?space={space}"}
SEARCH_JPEG = sorted((ROOT / "sample_images").rglob("*.jpg"))[0]


# The peak RSS as the process's own VmHWM: ru_maxrss would carry the RSS of this process
# (the parent) over the fork and exec.
PEAK = ("import atexit, sys\n"
        "atexit.register(lambda: print('VmHWM', [line.split()[1] for line in "
        "open('/proc/self/status') if line.startswith('VmHWM')][0], file=sys.stderr))\n")


def run_process(code: str, environment: dict, tree: Path = ROOT) -> tuple[float, float, str]:
    """Run Python code in a fresh process on the code of `tree`; return (seconds, peak RSS
    in MiB, stdout)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK + code], cwd=tree,
                          env={**environment, "PYTHONPATH": str(tree)},
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {code}\n{done.stderr[-3000:]}")
    peak = int(done.stderr.rsplit("VmHWM ", 1)[1].split()[0])
    return seconds, peak / 1024, done.stdout


def add_features(url: str, ids: list[int], extra: int) -> np.ndarray:
    """Store pool_3-like vectors of the images `ids`, a transaction per part, and return
    `extra` more vectors of the same collection (never stored: the new images)."""
    engine = make_engine(url)
    new = []
    for start, part in pool3_like_parts(len(ids) + extra, seed=27, rows=5000):  # 40 MB each
        stored = part[:max(0, len(ids) - start)]
        new.append(part[len(stored):])
        if len(stored):
            with engine.begin() as connection:
                connection.execute(insert(ImageFeatures), [
                    {"image_id": i, "model": MODEL_NAME, "vector": encode_vector(v)}
                    for i, v in zip(ids[start:start + len(stored)], stored)])
    with engine.begin() as connection:
        connection.execute(text("UPDATE images SET needs_grouping = 1"))
    engine.dispose()
    return np.concatenate(new)


# The engine's time for pool3 (2,048 dimensions) apart from the job, on the vectors the
# full run left in its local copy: a sample of rows against all N, and, at the smaller
# sizes, search_all whole to check the extrapolation from the sample.
POOL3_ENGINE = """
import json, time
from pathlib import Path
import numpy as np
from numerics.engine import ExactIndex
from runtime.settings import load_settings
settings = load_settings()
memory = settings.grouping_memory_mb << 20
folder = next(Path(settings.vector_cache).glob('*/manifest.json')).parent
name = json.loads((folder / 'manifest.json').read_text())['segments'][-1]
ids = np.load(folder / f'{name}-ids.npy')
vectors = np.load(folder / f'{name}-vectors.npy')
index = ExactIndex(vectors, ids)
rows = np.sort(np.random.default_rng(0).choice(len(ids), SAMPLE, replace=False))
started = time.perf_counter()
index.search(vectors[rows], ids[rows], 100, memory)
print(time.perf_counter() - started)
if WHOLE:
    started = time.perf_counter()
    for _ in index.search_all(100, memory):
        pass
    print(time.perf_counter() - started)
"""
POOL3_SAMPLE = 2048

# --without-pool3: the job computes the whitened space only, as if pool3 were off.
WITHOUT_POOL3 = """
from jobs.grouping import spaces as _spaces
_prepare = _spaces.prepare
_spaces.prepare = lambda *a, **k: [s for s in _prepare(*a, **k) if s.name != 'pool3']
if hasattr(_spaces, 'names'):
    _names = _spaces.names
    _spaces.names = lambda settings: [n for n in _names(settings) if n != 'pool3']
"""


def add_new_images(url: str, vectors: np.ndarray, prefix: str = "new") -> None:
    """Register images (no files: the feature job does not run after them) with
    features, flagged for grouping, as the feature job leaves new images."""
    engine = make_engine(url)
    paths = [f"{prefix}/{i:07d}.jpg" for i in range(len(vectors))]
    for start in range(0, len(paths), 5000):
        part = paths[start:start + 5000]
        with engine.begin() as connection:
            connection.execute(insert(Image), [
                {"path": p, "path_hash": hashlib.sha256(p.encode()).hexdigest(),
                 "file_name": p.rsplit("/", 1)[1], "status": "ok", "needs_grouping": True}
                for p in part])
            ids = dict(connection.execute(select(Image.path, Image.id)
                                          .where(Image.path.in_(part))).all())
            connection.execute(insert(ImageFeatures), [
                {"image_id": ids[p], "model": MODEL_NAME, "vector": encode_vector(v)}
                for p, v in zip(part, vectors[start:start + 5000])])
    engine.dispose()


def get(port: int, path: str, body: bytes | None = None) -> tuple[float, int]:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.request("POST" if body else "GET", path, body=body,
                       headers={"Content-Type": "image/jpeg"} if body else {})
    response = connection.getresponse()
    response.read()
    connection.close()
    return time.perf_counter() - started, response.status


def median_of(port: int, path: str, rounds: int, body: bytes | None = None) -> float:
    times = []
    for _ in range(rounds):
        seconds, status = get(port, path, body)
        assert status == 200, (path, status)
        times.append(seconds)
    return statistics.median(times)


def database_bytes(url: str) -> dict[str, int]:
    engine = make_engine(url)
    with engine.connect() as connection:
        # information_schema reads InnoDB's statistics, brought up to date here.
        tables = [row[0] for row in connection.execute(text("SHOW TABLES"))]
        connection.execute(text("ANALYZE TABLE " + ", ".join(tables)))
        rows = connection.execute(text(
            "SELECT table_name, data_length + index_length FROM information_schema.tables "
            "WHERE table_schema = DATABASE()")).all()
    engine.dispose()
    return {name: int(size) for name, size in rows}


class Figures(dict):
    """Each part's (value, unit), printed as it comes: a long run killed midway still
    leaves its figures."""

    def __setitem__(self, part: str, figure: tuple[float, str]) -> None:
        print(f"  {part}: {figure[0]:,.4g} {figure[1]}", flush=True)
        super().__setitem__(part, figure)


def measure(server_url: str, n: int, args, folder: Path) -> dict:
    figures = Figures()
    space = "whitened" if args.without_pool3 else "pool3"
    # The generated clusters are tight in the whitened space: half of all list entries
    # lie within its near-duplicate distance (1.06), where a real collection has few
    # pairs. Below every generated distance, the report measures the scan alone, as the
    # pool3 default does on these vectors.
    duplicates = ["--max-distance", "0.5"] if args.without_pool3 else []
    print(f"N = {n}: load average {os.getloadavg()[0]:.2f}", flush=True)
    files = make_files(n)
    with scratch_database(server_url, prefix="bench_million") as url:
        started = time.perf_counter()
        register_all(url, files)
        engine = make_engine(url)
        with engine.connect() as connection:
            ids = connection.execute(select(Image.id).order_by(Image.id)).scalars().all()
        engine.dispose()
        new_vectors = add_features(url, ids, args.new)
        seconds = time.perf_counter() - started
        figures["fill (files registered, vectors made and inserted)"] = (seconds, "s")
        environment = {**os.environ, "DATABASE_URL": url, "IMAGE_ROOT": str(files),
                       "VECTOR_CACHE": str(folder / f"vectors-{n}"),
                       "SEARCH_CACHE": str(folder / f"search-{n}"),
                       "THUMBNAIL_CACHE": str(folder / f"thumbnails-{n}"),
                       "WHITENED_DIMENSIONS": str(args.whitened),
                       "AUGMENTED_K": str(args.augmented), "DASK_SCHEDULER": "",
                       "LOG_LEVEL": "WARNING"}
        grouping = ((WITHOUT_POOL3 if args.without_pool3 else "")
                    + "import json, group_images\n"
                    "from jobs.grouping.run import run\n"
                    "from runtime.settings import load_settings\n"
                    "print(json.dumps(run(load_settings(), quiet=True)))")
        seconds, rss, out = run_process(grouping, environment)
        figures["full grouping run"] = (seconds, f"s, peak RSS {rss:,.0f} MiB")
        print(f"  full run counts: {out.strip()[:400]}", flush=True)
        seconds, rss, out = run_process(
            POOL3_ENGINE.replace("SAMPLE", str(min(n, POOL3_SAMPLE)))
            .replace("WHOLE", str(n <= args.pool3_whole_up_to)), environment)
        times = [float(line) for line in out.split()]
        figures["pool3 engine, a sample of rows against all"] = (
            times[0], f"s for {min(n, POOL3_SAMPLE):,} rows; a full run's pool3 engine "
                      "extrapolated: "
                      f"{times[0] * n / min(n, POOL3_SAMPLE) / 2:,.0f} s")
        if len(times) > 1:
            figures["pool3 engine, search_all whole"] = (times[1], "s")
        seconds, rss, _ = run_process(
            "import sys, create_image_features\n"
            "assert create_image_features.main(['--quiet']) == 0\n"
            "assert 'tensorflow' not in sys.modules", environment)
        figures["feature job no-op rerun"] = (seconds, f"s, peak RSS {rss:,.0f} MiB")
        seconds, rss, out = run_process(grouping, environment)
        figures["grouping no-op rerun"] = (seconds, f"s, peak RSS {rss:,.0f} MiB")
        assert '"note": "every list is up to date"' in out, out[:400]
        if args.before_tree:
            seconds, rss, _ = run_process(grouping, environment, args.before_tree)
            figures["grouping no-op rerun, before"] = (seconds, f"s, peak RSS {rss:,.0f} MiB")
        add_new_images(url, new_vectors)
        seconds, rss, out = run_process(grouping, environment)
        figures[f"incremental grouping, {args.new} new"] = (seconds, f"s, peak RSS {rss:,.0f} MiB")
        seconds, rss, _ = run_process(
            "import report_duplicates, sys\n"
            f"sys.exit(report_duplicates.main(['--space', {space!r}, '--output', "
            f"{str(folder / 'dups.csv')!r}] + {duplicates!r}))",
            environment)
        figures["report_duplicates.py"] = (seconds, f"s, peak RSS {rss:,.0f} MiB")
        sizes = database_bytes(url)
        total = sum(sizes.values())
        figures["database size per image"] = (
            total / (n + args.new),
            "bytes; neighbours " + f"{sizes.get('image_neighbours', 0) / (n + args.new):,.0f}"
            + ", features " + f"{sizes.get('image_features', 0) / (n + args.new):,.0f}")

        saved = dict(os.environ)
        os.environ.update({key: environment[key] for key in
                           ("SEARCH_CACHE", "VECTOR_CACHE", "IMAGE_ROOT")})
        port = free_port()
        server = start_gunicorn(url, port, 2, 4)
        script = folder / "random_ids.lua"
        script.write_text(WRK_LUA)
        try:
            for name, path in ENDPOINTS.items():
                if args.without_pool3 and "neighbours/<id>" in name:
                    continue  # the original serves pool3's lists only: none here
                result = run_wrk(port, path.format(space=space), n, args.duration, 16, 2,
                                 script)
                figures[name] = (result["rps"], f"req/s; p50 {result['p50_us'] / 1000:.1f} ms, "
                                 f"p99 {result['p99_us'] / 1000:.1f} ms, "
                                 f"errors {result['errors']}")
            after = ids[int(0.9 * len(ids))]
            figures["browse, page 1"] = (median_of(
                port, "/api/v1/browse?order=path&limit=50", 20), "s (median)")
            figures["browse, page after the 90 % id"] = (median_of(
                port, f"/api/v1/browse?limit=50&after={after}", 20), "s (median)")
            jpeg = SEARCH_JPEG.read_bytes()
            first, status = get(port, "/api/v1/search?space=whitened", jpeg)
            assert status == 200, status
            figures["search by upload, first (loads the model)"] = (first, "s")
            figures["search by upload"] = (median_of(port, "/api/v1/search?space=whitened",
                                                     5, jpeg), "s (median of 5)")
            rss = [memory(pid)["rss"] for pid in workers(server.pid)]
            figures["service workers' RSS"] = (max(rss), "MiB, the larger of 2 workers; "
                                               f"vector files {du(folder / f'search-{n}')}")
            if args.before_tree:
                # The endpoints that count the images, as they were.
                stop(server)
                server = start_gunicorn(url, port, 2, 4, args.before_tree)
                for name in ("/api/v1/stats", "original /image_count"):
                    result = run_wrk(port, ENDPOINTS[name], n, args.duration, 16, 2, script)
                    figures[f"{name}, before"] = (
                        result["rps"], f"req/s; p50 {result['p50_us'] / 1000:.1f} ms, "
                        f"p99 {result['p99_us'] / 1000:.1f} ms, errors {result['errors']}")
        finally:
            stop(server)
            os.environ.clear()
            os.environ.update(saved)
    print(f"  load average at the end {os.getloadavg()[0]:.2f}", flush=True)
    return figures


def du(path: Path) -> str:
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return f"{total / 2**20:,.0f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mariadb-url", default=os.environ.get(
        "TEST_MARIADB_URL", "mysql+mysqlconnector://root@127.0.0.1:3307/"))
    parser.add_argument("--sizes", default="10000,40000")
    parser.add_argument("--new", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--whitened", type=int, default=256)
    parser.add_argument("--augmented", type=int, default=0, help="AUGMENTED_K")
    parser.add_argument("--without-pool3", action="store_true",
                        help="the job computes the whitened space only; pool3's engine "
                             "time is measured apart, on a sample")
    parser.add_argument("--pool3-whole-up-to", type=int, default=100_000,
                        help="also time pool3's search_all whole at sizes up to this")
    parser.add_argument("--before-tree", type=Path,
                        help="a checkout of the code before: its grouping no-op rerun too")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"machine: {os.cpu_count()} cores; sizes {sizes}; k = 100")
    folder = Path(tempfile.mkdtemp(prefix="bench-million-"))
    try:
        results = {n: measure(args.mariadb_url, n, args, folder) for n in sizes}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    small, large = sizes[0], sizes[-1]
    print(f"\n| part | N = {small:,} | N = {large:,} | ratio | N² would be | N would be |")
    print("|---|---:|---:|---:|---:|---:|")
    for part, (value, unit) in results[large].items():
        before = results[small][part][0]
        print(f"| {part} | {before:,.3g} | {value:,.3g} {unit} | {value / before:.2f} | "
              f"{(large / small) ** 2:.0f} | {large / small:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
