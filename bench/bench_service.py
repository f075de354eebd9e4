"""Load-test the read-only service: gunicorn + MariaDB holding N images with 100
neighbours each, driven by wrk on loopback at random ids.

    .venv/bin/python bench/bench_service.py [--images 100000] [--duration 20]
        [--workers 4] [--threads 4] [--connections 32] [--keep] [--write]

Runs, each for --duration seconds after a warm-up:
  1. baseline: /api/v1/healthz (one trivial query): what the stack costs per request;
  2. /api/v1/images/<id>/neighbours (default limit 20), and with limit=100;
  3. the original /image_name_and_neighbours/<id> (all 100);
  4. run 3 again while a writer replaces lists through the grouping job's own
     write_lists (one image's list per transaction) and a checker reads the rewritten
     lists, counting any list that is not whole (100 entries, one version).
Prints requests/s, p50/p99 latency and errors per run, and ratios to the baseline;
--write puts the same table into bench/results/service.md. The database
`bench_service` on the private MariaDB server (scripts/mariadb.sh, port 3307) is built
once with fast server-side inserts (load data, not a job test) and reused by later
runs unless --rebuild; --drop removes it at the end.
"""
from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

from sqlalchemy import (Column, Integer, MetaData, Table, create_engine, func,  # noqa: E402
                        insert, literal, select, text)
from sqlalchemy.engine import make_url  # noqa: E402

from db.engine import make_engine, upgrade  # noqa: E402
from db.models import POOL3, SPACE_IDS, Image, ImageNeighbour, NeighbourList  # noqa: E402
from db.neighbours import write_lists  # noqa: E402
from db.paths import text_hash as path_hash  # noqa: E402
from numerics.list_changes import ListChanges  # noqa: E402

NOTES_MARKER = "<!-- notes: kept when bench_service.py --write rewrites the figures -->"
DATABASE = os.environ.get("BENCH_DATABASE", "bench_service")
K = 100
WRK_LUA = r"""
-- Random ids in 1..n; each wrk thread seeds its own generator.
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  path_format = args[1]
  n = tonumber(args[2])
  math.randomseed(os.time() * 1000 + (seed or 0))
end
function request()
  return wrk.format("GET", string.format(path_format, math.random(1, n)))
end
function done(summary, latency, requests)
  io.write(string.format(
    'WRK {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout))
end
"""


def log(message: str) -> None:
    print(f"[bench_service] {message}", file=sys.stderr, flush=True)


def build_database(server_url: str, images: int, rebuild: bool) -> str:
    """Create (or reuse) the bench database with `images` images and K neighbours each."""
    server = make_url(server_url)
    url = server.set(database=DATABASE).render_as_string(hide_password=False)
    admin = create_engine(server.set(database=None))
    with admin.begin() as connection:
        if rebuild:
            connection.execute(text(f"DROP DATABASE IF EXISTS `{DATABASE}`"))
        connection.execute(text(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}` "
                                "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    admin.dispose()
    engine = make_engine(url)
    upgrade(engine)
    with engine.connect() as connection:
        have_images = connection.execute(select(func.count()).select_from(Image)).scalar()
        have_rows = connection.execute(select(func.count()).select_from(ImageNeighbour)
                                       ).scalar()
        have_lists = connection.execute(select(func.count()).select_from(NeighbourList)
                                        ).scalar()
    if have_images == images and have_rows == images * K and have_lists == images:
        log(f"reusing {DATABASE}: {images:,} images, {have_rows:,} neighbour rows")
        engine.dispose()
        return url
    if have_images or have_rows or have_lists:
        engine.dispose()
        return build_database(server_url, images, rebuild=True)
    started = time.perf_counter()
    with engine.begin() as connection:
        chunk = 10_000
        for first in range(1, images + 1, chunk):
            rows = []
            for image_id in range(first, min(first + chunk, images + 1)):
                path = f"batch_{image_id // 1000:04d}/scan_{image_id:07d}.jpg"
                rows.append({"id": image_id, "path": path, "path_hash": path_hash(path),
                             "file_name": path.rsplit("/", 1)[1], "size": 100_000,
                             "mtime_ns": 0, "content_hash": f"{image_id:064x}",
                             "width": 1024, "height": 768, "status": "ok",
                             "needs_grouping": False})
            connection.execute(insert(Image), rows)  # executemany: multi-row INSERTs
    log(f"inserted {images:,} images in {time.perf_counter() - started:.1f} s")
    # The K ranks as a small table, so that the server itself makes the N x K rows
    # with INSERT ... SELECT: minutes faster than sending 10 million rows.
    ranks = Table("bench_ranks", MetaData(), Column("n", Integer, primary_key=True))
    with engine.begin() as connection:
        ranks.drop(connection, checkfirst=True)
        ranks.create(connection)
        connection.execute(insert(ranks), [{"n": n} for n in range(1, K + 1)])
    image, rank = Image.__table__.alias("i"), ranks.alias("r")
    step = 5_000
    for first in range(1, images + 1, step):
        # Neighbour ids: the next K ids, wrapping around; distance grows with rank and
        # stays below 1 (the writer's versions use the integer part).
        query = (select(image.c.id, literal(SPACE_IDS[POOL3]),
                        (image.c.id - 1 + rank.c.n) % literal(images) + 1,
                        rank.c.n * literal(0.001))
                 .select_from(image.join(rank, literal(True)))
                 .where(image.c.id >= first, image.c.id < first + step))
        with engine.begin() as connection:
            connection.execute(insert(ImageNeighbour).from_select(
                ["image_id", "space", "neighbour_id", "distance"], query))
    with engine.begin() as connection:
        ranks.drop(connection)
        # Each list's length and last entry, as the grouping job keeps them.
        connection.execute(insert(NeighbourList).from_select(
            ["image_id", "space", "length", "last_distance", "last_neighbour_id"],
            select(Image.id, literal(SPACE_IDS[POOL3]), literal(K), literal(K * 0.001),
                   (Image.id - 1 + K) % literal(images) + 1)))
    log(f"built {images * K:,} neighbour rows in {time.perf_counter() - started:.1f} s")
    engine.dispose()
    return url


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """Return the user + system CPU seconds a process has used so far (0 if gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children(pid: int) -> list[int]:
    """Return the ids of the direct children of a process."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            pass
    return found


def mariadb_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


class CpuMeter:
    """CPU seconds used by gunicorn (master and workers), MariaDB and wrk during a run."""

    def __init__(self, gunicorn_pid: int, mariadb: int | None):
        self.pids = {"service": [gunicorn_pid, *children(gunicorn_pid)],
                     "mariadb": [mariadb] if mariadb else []}

    def sample(self) -> dict[str, float]:
        usage = {name: sum(process_cpu(pid) for pid in pids)
                 for name, pids in self.pids.items()}
        rusage = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once it has exited
        usage["wrk"] = rusage.ru_utime + rusage.ru_stime
        return usage


def start_gunicorn(url: str, port: int, workers: int, threads: int,
                   tree: Path = ROOT) -> subprocess.Popen:
    """Start the service of the code in `tree` and wait until it answers."""
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING",
           "THUMBNAIL_CACHE": tempfile.mkdtemp(prefix="bench-thumbs-")}
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [str(gunicorn), "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
         "--worker-class", "gthread", "--threads", str(threads), "--no-control-socket",
         "--log-level", "warning", "--backlog", "2048", "service:create_app()"],
        cwd=tree, env=env, start_new_session=True)
    for _ in range(200):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            pass
        if process.poll() is not None:
            raise SystemExit("gunicorn exited")
        time.sleep(0.1)
    raise SystemExit("gunicorn did not answer")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def run_wrk(port: int, path_format: str, images: int, duration: int, connections: int,
            threads: int, script: Path, meter: CpuMeter | None = None) -> dict:
    """Run wrk against random ids; return its summary, req/s and CPU ms per request."""
    before = meter.sample() if meter else None
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
               "--timeout", "5s", "-s", str(script), f"http://127.0.0.1:{port}",
               "--", path_format, str(images)]
    output = subprocess.run(command, capture_output=True, text=True, check=True,
                            timeout=duration + 60).stdout
    match = re.search(r"^WRK (\{.*\})$", output, re.MULTILINE)
    if not match:
        raise SystemExit(f"unexpected wrk output:\n{output}")
    result = json.loads(match.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status",
                                               "timeout"))
    if meter:
        after = meter.sample()
        result["cpu_ms"] = {name: (after[name] - before[name]) * 1000 / result["requests"]
                            for name in after}
    return result


class Writer(threading.Thread):
    """Replace the lists of `ids` over and over, one list per transaction."""

    def __init__(self, url: str, ids: list[int], images: int, stop_event: threading.Event,
                 split: bool = False):
        super().__init__(daemon=True)
        self.url, self.ids, self.images, self.stop_event = url, ids, images, stop_event
        # split: the control, a broken writer that commits the DELETE and each half of
        # the INSERT separately; the checkers must see its partial lists.
        self.split = split
        self.rewrites, self.error = 0, None

    def run(self):
        engine = make_engine(self.url)
        rng, version = random.Random(1), 0
        try:
            while not self.stop_event.is_set():
                version += 1
                image_id = rng.choice(self.ids)
                shift = rng.randrange(1, self.images - K)
                ranks = np.arange(1, K + 1)
                lists = ListChanges.replacing(
                    [image_id], ((image_id - 1 + shift + ranks) % self.images + 1)[None],
                    (version + ranks * 0.001)[None])
                if self.split:
                    half = K // 2
                    for part in (ListChanges([image_id], [], [], []),
                                 ListChanges([], [], lists.added[:half], []),
                                 ListChanges([], [], lists.added[half:], lists.ends)):
                        write_lists(engine, SPACE_IDS[POOL3], part)
                else:
                    write_lists(engine, SPACE_IDS[POOL3], lists)  # the grouping job's own transaction
                self.rewrites += 1
        except Exception as error:  # reported, not swallowed
            self.error = repr(error)
        finally:
            engine.dispose()


class Checker(threading.Thread):
    """Read the lists the writer rewrites; count any that are not whole."""

    def __init__(self, port: int, ids: list[int], stop_event: threading.Event, seed: int):
        super().__init__(daemon=True)
        self.port, self.ids, self.stop_event, self.seed = port, ids, stop_event, seed
        self.checked, self.partial, self.failed = 0, 0, 0

    def run(self):
        rng = random.Random(100 + self.seed)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop_event.is_set():
            path = f"/image_name_and_neighbours/{rng.choice(self.ids)}"
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
            except OSError:
                self.failed += 1
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                continue
            if response.status != 200:
                self.failed += 1
                continue
            _, entries = json.loads(body)
            versions = {math.floor(entry["distance"]) for entry in entries}
            ids = {entry["id"] for entry in entries}
            if len(entries) != K or len(versions) != 1 or len(ids) != K:
                self.partial += 1
            self.checked += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default=os.environ.get(
        "TEST_MARIADB_URL", "mysql+mysqlconnector://root@127.0.0.1:3307/"))
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--mariadb-pid-file", default="/tmp/imagegroup-mariadb-3307/"
                        "mariadb.pid", help="to count the server's CPU time per request")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--drop", action="store_true")
    parser.add_argument("--write", action="store_true",
                        help="write the table into bench/results/service.md")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian package wrk)")

    url = build_database(args.server, args.images, args.rebuild)
    # Other work on the machine takes CPU from all three: the load says how much.
    load_before = os.getloadavg()[0]
    port = free_port()
    script = Path(tempfile.mkdtemp(prefix="bench-wrk-")) / "random_ids.lua"
    script.write_text(WRK_LUA)
    server = start_gunicorn(url, port, args.workers, args.threads)
    meter = CpuMeter(server.pid, mariadb_pid(Path(args.mariadb_pid_file)))
    runs = [("baseline: /api/v1/healthz", "/api/v1/healthz?%d"),
            ("/api/v1/images/<id>/neighbours", "/api/v1/images/%d/neighbours"),
            ("/api/v1/images/<id>/neighbours?limit=100",
             "/api/v1/images/%d/neighbours?limit=100"),
            ("/image_name_and_neighbours/<id>", "/image_name_and_neighbours/%d")]
    results = []
    try:
        def measure(path_format):
            run_wrk(port, path_format, args.images, args.warmup, args.connections,
                    args.wrk_threads, script)
            return run_wrk(port, path_format, args.images, args.duration, args.connections,
                           args.wrk_threads, script, meter)

        for label, path_format in runs:
            log(f"wrk {label}")
            results.append((label, measure(path_format)))

        label = "/image_name_and_neighbours/<id> while lists are rewritten"
        log(f"wrk {label}")
        hot = list(range(1, 201))  # the writer's and the checker's ids
        stop_event = threading.Event()
        writer = Writer(url, hot, args.images, stop_event)
        # Several checkers: each waits its turn behind wrk's connections.
        checkers = [Checker(port, hot, stop_event, seed) for seed in range(4)]
        writer.start()
        for checker in checkers:
            checker.start()
        started = time.perf_counter()
        result = run_wrk(port, "/image_name_and_neighbours/%d", args.images,
                         args.duration, args.connections, args.wrk_threads, script, meter)
        stop_event.set()
        writer.join(30)
        for checker in checkers:
            checker.join(30)
        elapsed = time.perf_counter() - started
        results.append((label, result))

        log("control: a broken writer, to show that the checkers see partial lists")
        control_stop = threading.Event()
        control_ids = list(range(201, 211))
        broken = Writer(url, control_ids, args.images, control_stop, split=True)
        control = [Checker(port, control_ids, control_stop, 10 + seed) for seed in range(4)]
        for thread in (broken, *control):
            thread.start()
        time.sleep(5)
        control_stop.set()
        for thread in (broken, *control):
            thread.join(30)
    finally:
        stop(server)
        shutil.rmtree(script.parent, ignore_errors=True)
        if args.drop:
            admin = create_engine(make_url(args.server).set(database=None))
            with admin.begin() as connection:
                connection.execute(text(f"DROP DATABASE IF EXISTS `{DATABASE}`"))
            admin.dispose()

    checked = sum(checker.checked for checker in checkers)
    partial = sum(checker.partial for checker in checkers)
    failed = sum(checker.failed for checker in checkers)
    baseline = results[0][1]["rps"]
    lines = ["| run | requests/s | ratio to baseline | p50 ms | p99 ms | errors | "
             "CPU ms/request: service + MariaDB + wrk | requests/s 2 idle cores could "
             "serve |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, r in results:
        cpu = r["cpu_ms"]
        total = sum(cpu.values())
        lines.append(f"| {label} | {r['rps']:,.0f} | {r['rps'] / baseline:.2f} | "
                     f"{r['p50_us'] / 1000:.1f} | {r['p99_us'] / 1000:.1f} | "
                     f"{r['errors']} | {cpu['service']:.2f} + {cpu['mariadb']:.2f} + "
                     f"{cpu['wrk']:.2f} = {total:.2f} | {2000 / total:,.0f} |")
    writer_line = (f"Writer: {writer.rewrites:,} lists replaced in {elapsed:.0f} s "
                   f"({writer.rewrites / elapsed:,.0f}/s, the grouping job's write_lists, one "
                   f"list of {K} per transaction, over ids 1-{len(hot)}); error: "
                   f"{writer.error}. "
                   f"Checkers: {checked:,} of those lists read during the rewrites, "
                   f"{partial} partial or mixed, {failed} failed requests.")
    setup = (f"{args.images:,} images x {K} neighbours in MariaDB "
             f"({make_url(args.server).host}:{make_url(args.server).port}); gunicorn "
             f"{args.workers} workers x {args.threads} threads (gthread); wrk "
             f"{args.wrk_threads} threads, {args.connections} connections, "
             f"{args.duration} s per run after {args.warmup} s warm-up, random ids; "
             f"{os.cpu_count()} CPU cores shared by wrk, gunicorn and MariaDB; load "
             f"average (1 min) {load_before:.2f} before the runs, {os.getloadavg()[0]:.2f} "
             f"after; {time.strftime('%Y-%m-%d %H:%M')}.")
    control_line = (f"Control: a broken writer that commits the DELETE and the two halves "
                    f"of the new list separately ({broken.rewrites} lists, 5 s, ids 201-210): "
                    f"the checkers saw {sum(c.partial for c in control)} partial lists and "
                    f"{sum(c.failed for c in control)} lists missing (404) out of "
                    f"{sum(c.checked + c.failed for c in control)} reads.")
    report = "\n".join([setup, "", *lines, "", writer_line, "", control_line])
    print(report)
    if args.write:
        command = "bench/bench_service.py " + " ".join(sys.argv[1:])
        target = ROOT / "bench" / "results" / "service.md"
        target.parent.mkdir(parents=True, exist_ok=True)
        # The notes below the marker are written by hand; keep them.
        old = target.read_text() if target.is_file() else ""
        notes = old[old.index(NOTES_MARKER):] if NOTES_MARKER in old else NOTES_MARKER + "\n"
        target.write_text(f"## Service under load (issue 6)\n\nCommand: `.venv/bin/python "
                          f"{command.strip()}`\n\n{report}\n\n{notes}")
        log(f"wrote {target}")
    if writer.error or partial or failed or any(r["errors"] for _, r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
