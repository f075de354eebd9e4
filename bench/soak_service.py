"""Soak the service against MariaDB: mixed traffic for a long time, list rewrites, a feature
job run and one MariaDB restart in the same run; report what a client and the logs saw.

    TEST_MARIADB_URL=$(scripts/mariadb.sh start) .venv/bin/python bench/soak_service.py --images 100000 --duration 1800 --write

(the recorded run, one line). The server is the private one of scripts/mariadb.sh (its
TEST_MARIADB_PORT / TEST_MARIADB_DIR, default port 3307), which the soak restarts with
that script, so never point it at a shared server. The first run at a size builds the
database `bench_service` (as bench/bench_service.py does; minutes at 100,000 images, not
counted in --duration) and later runs reuse it.

During --duration seconds:
  - --clients threads send a mix over every read endpoint (JSON neighbours and pages,
    the original endpoints, plots, thumbnails, files, HTML pages, lookups, 404s, 400s),
    each request checked against the status it must have;
  - a writer replaces lists of ids 1-200 through the grouping job's write_lists (one
    list per transaction) and checkers read them back, counting any list not whole;
  - at 1/3 of the run create_image_features.py processes a new batch of sample images
    (its own database `soak_jobs` on the same server, so the 100,000 images stay);
  - at 1/2 MariaDB is stopped and started again (scripts/mariadb.sh stop; start).
Before the mixed traffic and again after it (the same workers, after the restart), wrk
measures the service alone as bench/bench_service.py does (--wrk-seconds per endpoint,
32 connections), against the service's targets. Reports requests by status, failures
outside the restart window, the recovery time after the server is back, worker exits and
boots from gunicorn's log, segfaults from the kernel log (where dmesg is readable), RSS
per worker at 1/6 of the run and at the end, p50/p99 per endpoint. Exit status 1 when a
target is missed. --app-dir runs another checkout's service (to compare code versions on
the same load); --write records into bench/results/reliability.md.
"""
from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

from sqlalchemy import delete, insert, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench_service import WRK_LUA, K, build_database, free_port, run_wrk, stop  # noqa: E402
from db.engine import make_engine  # noqa: E402
from db.models import POOL3, SPACE_IDS, ImageFeatures  # noqa: E402
from db.neighbours import write_lists  # noqa: E402
from numerics.list_changes import ListChanges  # noqa: E402
from numerics.vectors import MODEL_NAME  # noqa: E402

HOT = range(1, 201)  # ids whose lists the writer rewrites and the checkers read
WITH_FILES = 300  # ids 1..WITH_FILES get a JPEG on disk and a feature vector
RESTART_SLACK = 5.0  # seconds after the server is back that still count as its window
SAMPLES = sorted((ROOT / "sample_images").rglob("*.jpg"))
# The service's throughput targets (bench/results/service.md): wrk, 32 connections.
WRK_RUNS = [("api neighbours", "/api/v1/images/%d/neighbours"),
            ("legacy image_name_and_neighbours", "/image_name_and_neighbours/%d")]
WRK_CONNECTIONS, TARGET_RPS, TARGET_P99_MS = 32, 1000, 50


def log(message: str) -> None:
    print(f"[soak] {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def mariadb_script(action: str) -> str:
    return subprocess.run([str(ROOT / "scripts" / "mariadb.sh"), action], check=True,
                          capture_output=True, text=True, timeout=180).stdout.strip()


def prepare(url: str, images: int, root: Path) -> None:
    """Give ids 1..WITH_FILES a file under `root` and a stored vector."""
    engine = make_engine(url)
    rng = np.random.default_rng(0)
    with engine.begin() as connection:
        paths = dict(connection.execute(text("SELECT id, path FROM images WHERE id <= :n"),
                                        {"n": WITH_FILES}).all())
        connection.execute(delete(ImageFeatures).where(ImageFeatures.image_id <= WITH_FILES))
        connection.execute(insert(ImageFeatures), [
            {"image_id": i, "model": MODEL_NAME,
             "vector": rng.random(2048, dtype=np.float32).astype("<f4").tobytes()}
            for i in paths])
    engine.dispose()
    for image_id, path in paths.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(SAMPLES[image_id % len(SAMPLES)], target)


def requests_mix(images: int) -> list[tuple[str, int, str, callable]]:
    """(endpoint label, weight, expected status, path maker) for the client threads."""
    any_id = lambda r: r.randint(1, images)  # noqa: E731
    with_file = lambda r: r.randint(1, WITH_FILES)  # noqa: E731
    return [
        ("api neighbours", 20, 200, lambda r: f"/api/v1/images/{any_id(r)}/neighbours"),
        ("api neighbours limit=100&offset", 5, 200,
         lambda r: f"/api/v1/images/{any_id(r)}/neighbours?limit=100&offset={r.randint(0, 50)}"),
        ("api image", 5, 200, lambda r: f"/api/v1/images/{any_id(r)}"),
        ("api images page", 5, 200,
         lambda r: f"/api/v1/images?limit=50&cursor={r.randint(0, images - 50)}"),
        ("api lookup name", 3, 200,
         lambda r: f"/api/v1/images/lookup?name=scan_{any_id(r):07d}.jpg"),
        ("api features", 3, 200, lambda r: f"/api/v1/images/{with_file(r)}/features"),
        ("api stats", 1, 200, lambda r: "/api/v1/stats"),
        ("legacy image_name_and_neighbours", 20, 200,
         lambda r: f"/image_name_and_neighbours/{any_id(r)}"),
        ("legacy image_name", 5, 200, lambda r: f"/image_name/{any_id(r)}"),
        ("legacy image_count", 2, 200, lambda r: "/image_count"),
        ("legacy image_fingerprint", 3, 200, lambda r: f"/image_fingerprint/{with_file(r)}"),
        ("plot png", 3, 200, lambda r: f"/images/{with_file(r)}/fingerprint.png"),
        ("thumbnail", 5, 200, lambda r: f"/images/{with_file(r)}/thumbnail?size=128"),
        ("file", 2, 200, lambda r: f"/images/{with_file(r)}/file"),
        ("html image page", 5, 200, lambda r: f"/images/{any_id(r)}"),
        ("404 unknown id", 4, 404, lambda r: f"/api/v1/images/{images + any_id(r)}/neighbours"),
        ("404 legacy unknown id", 2, 404, lambda r: f"/image_name/{images + any_id(r)}"),
        ("400 bad id", 2, 400, lambda r: "/api/v1/images/x1/neighbours"),
        ("400 bad limit", 2, 400, lambda r: f"/api/v1/images/{any_id(r)}/neighbours?limit=0"),
    ]


class Client(threading.Thread):
    """Send the mix; record (time, label, status or exception, latency, JSON or not)."""

    def __init__(self, port, mix, stop_event, seed, records):
        super().__init__(daemon=True)
        self.port, self.mix, self.stop_event, self.seed = port, mix, stop_event, seed
        self.records = records

    def run(self):
        rng = random.Random(self.seed)
        weights = [weight for _, weight, _, _ in self.mix]
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.stop_event.is_set():
            label, _, expected, path = rng.choices(self.mix, weights)[0]
            started = time.monotonic()
            try:
                connection.request("GET", path(rng))
                response = connection.getresponse()
                body = response.read()
                status = response.status
                is_json = response.getheader("Content-Type", "").startswith(
                    "application/json")
                if status == 503 and is_json:
                    json.loads(body)
            except (OSError, http.client.HTTPException, ValueError) as error:
                status, is_json = type(error).__name__, False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.records.append((started, label, expected, status,
                                 time.monotonic() - started, is_json))


class ListWriter(threading.Thread):
    """Replace the lists of HOT over and over through write_lists; survive the restart."""

    def __init__(self, url, images, stop_event):
        super().__init__(daemon=True)
        self.url, self.images, self.stop_event = url, images, stop_event
        self.rewrites, self.errors = 0, Counter()

    def run(self):
        engine = make_engine(self.url)
        rng, version = random.Random(1), 0
        ranks = np.arange(1, K + 1)
        while not self.stop_event.is_set():
            version += 1
            image_id = rng.choice(HOT)
            shift = rng.randrange(1, self.images - K)
            try:
                write_lists(engine, SPACE_IDS[POOL3], ListChanges.replacing(
                    [image_id], ((image_id - 1 + shift + ranks) % self.images + 1)[None],
                    (version + ranks * 0.001)[None]))
                self.rewrites += 1
            except Exception as error:  # the restart: count it, wait, go on
                self.errors[type(error).__name__] += 1
                time.sleep(0.5)
        engine.dispose()


class ListChecker(threading.Thread):
    """Read HOT lists; count any not whole (K entries, one version, K distinct ids)."""

    def __init__(self, port, stop_event, seed):
        super().__init__(daemon=True)
        self.port, self.stop_event, self.seed = port, stop_event, seed
        self.checked, self.partial = 0, 0

    def run(self):
        rng = random.Random(1000 + self.seed)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.stop_event.is_set():
            try:
                connection.request("GET", f"/image_name_and_neighbours/{rng.choice(HOT)}")
                response = connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                continue
            if response.status != 200:
                continue  # counted by the clients' figures, not a partial list
            entries = json.loads(body)[1]
            versions = {math.floor(entry["distance"]) for entry in entries}
            if len(entries) != K or len(versions) != 1 or \
                    len({entry["id"] for entry in entries}) != K:
                self.partial += 1
            self.checked += 1
            time.sleep(0.01)


class ConnectionKiller(threading.Thread):
    """KILL CONNECTION a random session on the soak's database every `every` seconds."""

    def __init__(self, server_url, database, every, stop_event):
        super().__init__(daemon=True)
        self.server_url, self.database, self.every = server_url, database, every
        self.stop_event, self.kills = stop_event, 0

    def run(self):
        # On no database, so that it never picks its own session.
        engine = make_engine(make_url(self.server_url).set(database=None)
                             .render_as_string(hide_password=False))
        while not self.stop_event.wait(self.every):
            try:
                with engine.connect() as connection:
                    session = connection.execute(text(
                        "SELECT id FROM information_schema.processlist WHERE db = :db "
                        "ORDER BY RAND() LIMIT 1"), {"db": self.database}).scalar()
                    if session is not None:
                        connection.execute(text(f"KILL CONNECTION {int(session)}"))
                        self.kills += 1
            except Exception:  # noqa: BLE001 - the restart, or the session already gone
                pass
        engine.dispose()


def workers_rss(master: int) -> dict[int, int]:
    """Return the resident memory (KiB) of each gunicorn worker."""
    found = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
        except (OSError, ValueError):
            continue
        if fields.get("PPid", "").strip() == str(master):
            found[int(status.parent.name)] = int(fields.get("VmRSS", "0 kB").split()[0])
    return found


def kernel_log() -> list[str] | None:
    """Return the kernel log's lines, or None where it cannot be read."""
    result = subprocess.run(["dmesg"], capture_output=True, text=True)
    return result.stdout.splitlines() if result.returncode == 0 else None


def wrk_check(port: int, images: int, seconds: int, script: Path) -> dict[str, dict]:
    """Measure the service alone on the endpoints of its throughput targets."""
    results = {}
    for label, path_format in WRK_RUNS:
        run_wrk(port, path_format, images, 2, WRK_CONNECTIONS, 2, script)  # warm-up
        results[label] = run_wrk(port, path_format, images, seconds, WRK_CONNECTIONS, 2,
                                 script)
    return results


def wait_for_purge(url: str, limit: float = 300.0) -> float:
    """Wait until InnoDB has purged the row versions the rewrites left; return the wait."""
    # After the soak the service alone is measured, not the server still cleaning up
    # hundreds of thousands of rewritten lists (minutes of its CPU).
    engine = make_engine(url)
    started = time.monotonic()
    with engine.connect() as connection:
        while time.monotonic() - started < limit and connection.execute(text(
                "SELECT `COUNT` FROM information_schema.INNODB_METRICS "
                "WHERE NAME = 'trx_rseg_history_len'")).scalar() > 1000:
            time.sleep(2)
    engine.dispose()
    return time.monotonic() - started


def run_feature_job(server: str, folder: Path) -> str:
    """Run create_image_features.py on a new batch in its own database; return how it ended."""
    url = make_url(server).set(database="soak_jobs")
    admin = make_engine(make_url(server).set(database=None).render_as_string(False))
    with admin.begin() as connection:
        connection.execute(text("DROP DATABASE IF EXISTS soak_jobs"))
        connection.execute(text("CREATE DATABASE soak_jobs CHARACTER SET utf8mb4 "
                                "COLLATE utf8mb4_bin"))
    admin.dispose()
    for number, sample in enumerate(SAMPLES[:40]):
        os.link(sample, folder / f"new_{number:03d}.jpg")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "create_image_features.py", "--quiet"], cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False),
             "IMAGE_ROOT": str(folder)}, capture_output=True, text=True, timeout=1800)
    lines = [line for line in (result.stdout + result.stderr).splitlines()
             if line.strip() and not line.startswith(("I0000 ", "WARNING: All log"))]
    return f"exit {result.returncode} after {time.monotonic() - started:.0f} s: {lines[-1:]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default=os.environ.get(
        "TEST_MARIADB_URL", "mysql+mysqlconnector://root@127.0.0.1:3307/"))
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=1800, help="seconds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--no-restart", action="store_true")
    parser.add_argument("--no-feature-job", action="store_true")
    parser.add_argument("--kill-connections", type=float, default=0, metavar="SECONDS",
                        help="KILL CONNECTION a random session of the service or the writer "
                             "this often (0: never), to stress the drivers' error paths")
    parser.add_argument("--app-dir", default=str(ROOT), help="checkout whose service runs")
    parser.add_argument("--url-driver", default=None,
                        help="SQLAlchemy driver for the service, e.g. mariadbconnector")
    parser.add_argument("--use-pure", action="store_true",
                        help="mysql-connector's pure Python mode for the service")
    parser.add_argument("--wrk-seconds", type=int, default=15,
                        help="wrk run per endpoint before and after the soak (0: none)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.wrk_seconds and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian package wrk); or pass --wrk-seconds 0")

    url = build_database(args.server, args.images, rebuild=False)
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    (work / "images").mkdir()
    (work / "new").mkdir()
    prepare(url, args.images, work / "images")
    service_url = make_url(url)
    if args.url_driver:
        service_url = service_url.set(drivername=f"mysql+{args.url_driver}")
    if args.use_pure:
        service_url = service_url.update_query_dict({"use_pure": "true"})
    port = free_port()
    gunicorn_log = work / "gunicorn.log"
    env = {**os.environ, "DATABASE_URL": service_url.render_as_string(hide_password=False),
           "IMAGE_ROOT": str(work / "images"), "THUMBNAIL_CACHE": str(work / "thumbs"),
           "LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "--bind", f"127.0.0.1:{port}",
         "--workers", str(args.workers), "--worker-class", "gthread", "--threads",
         str(args.threads), "--no-control-socket", "--log-level", "info",
         "--error-logfile", "-", "service:create_app()"],
        # gunicorn's log and the application's (Flask logs to stderr) in one file.
        cwd=args.app_dir, env=env, start_new_session=True,
        stdout=gunicorn_log.open("ab"), stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            probe.request("GET", "/healthz")
            if probe.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.2)
    else:
        raise SystemExit("gunicorn did not answer")
    kernel_before = kernel_log()
    wrk_script = work / "random_ids.lua"
    wrk_script.write_text(WRK_LUA)
    wrk = {}
    if args.wrk_seconds:
        wait_for_purge(url)
        log("wrk before the soak")
        wrk["start"] = wrk_check(port, args.images, args.wrk_seconds, wrk_script)
    mix = requests_mix(args.images)
    records: list = []
    stop_event = threading.Event()
    threads = [Client(port, mix, stop_event, seed, records) for seed in range(args.clients)]
    writer = ListWriter(url, args.images, stop_event)
    checkers = [ListChecker(port, stop_event, seed) for seed in range(2)]
    if args.kill_connections:
        checkers.append(ConnectionKiller(args.server, make_url(url).database,
                                         args.kill_connections, stop_event))
    start = time.monotonic()
    log(f"soak for {args.duration} s on port {port}, {args.images:,} images, "
        f"service from {args.app_dir} ({service_url.drivername}, use_pure={args.use_pure})")
    for thread in (*threads, writer, *checkers):
        thread.start()
    rss_early = rss_end = None
    restart = None  # (stopped at, back at)
    job_result = "not run"
    job_thread = None
    try:
        while (now := time.monotonic() - start) < args.duration:
            if rss_early is None and now >= args.duration / 6:
                rss_early = workers_rss(server.pid)
            if job_thread is None and not args.no_feature_job and now >= args.duration / 3:
                def _job():
                    nonlocal job_result
                    job_result = run_feature_job(args.server, work / "new")
                job_thread = threading.Thread(target=_job, daemon=True)
                job_thread.start()
                log("feature job started")
            if restart is None and not args.no_restart and now >= args.duration / 2:
                log("restarting MariaDB")
                stopped = time.monotonic()
                mariadb_script("stop")
                mariadb_script("start")
                restart = (stopped, time.monotonic())
                log(f"MariaDB back after {restart[1] - restart[0]:.1f} s")
            time.sleep(0.5)
        rss_end = workers_rss(server.pid)
    finally:
        stop_event.set()
        for thread in (*threads, writer, *checkers):
            thread.join(40)
        if job_thread is not None:
            job_thread.join(600)
        try:
            if args.wrk_seconds and server.poll() is None:
                wrk["purge_wait"] = wait_for_purge(url)
                log(f"wrk after the soak (and {wrk['purge_wait']:.0f} s for InnoDB's purge)")
                wrk["end"] = wrk_check(port, args.images, args.wrk_seconds, wrk_script)
        finally:
            stop(server)
    kernel_after = kernel_log()
    report, failed = summarize(args, records, restart, start, rss_early or {}, rss_end or {},
                               gunicorn_log.read_text(errors="replace"), kernel_before,
                               kernel_after, writer, checkers, job_result, wrk)
    print(report)
    if args.write:
        target = ROOT / "bench" / "results" / "reliability.md"
        old = target.read_text() if target.is_file() else "# Reliability\n"
        command = "bench/soak_service.py " + " ".join(sys.argv[1:])
        target.write_text(old.rstrip() + f"\n\n## Soak {time.strftime('%Y-%m-%d %H:%M')}\n\n"
                          f"Command: `.venv/bin/python {command.strip()}`\n\n{report}\n")
        log(f"wrote {target}")
    shutil.copy(gunicorn_log, Path(tempfile.gettempdir()) / "soak_service-gunicorn.log")
    shutil.rmtree(work, ignore_errors=True)
    if failed:
        raise SystemExit(1)


def summarize(args, records, restart, start, rss_early, rss_end, gunicorn_text,
              kernel_before, kernel_after, writer, checkers, job_result, wrk):
    """Return the report's text and whether a target was missed."""
    window = (restart[0], restart[1] + RESTART_SLACK) if restart else None
    by_status, bad_outside, bad_inside, slow_inside = Counter(), Counter(), Counter(), 0
    latencies = defaultdict(list)
    last_bad_after_back = None
    for started, label, expected, status, latency, is_json in records:
        by_status[status] += 1
        good = status == expected
        # A request in flight when the server stops belongs to the window too.
        inside = window is not None and started <= window[1] and \
            started + latency >= window[0]
        if not good:
            if inside:
                html = label.startswith("html")  # pages answer errors as HTML
                bad_inside[status if status != 503 or is_json or html
                           else "503 without JSON"] += 1
            else:
                bad_outside[f"{label}: {status}"] += 1
        if inside and latency > 5.0:
            slow_inside += 1
        if not inside and good:
            latencies[label].append(latency)
        if restart and not good and started >= restart[1]:
            last_bad_after_back = max(last_bad_after_back or 0.0, started + latency)
    recovery = (0.0 if last_bad_after_back is None
                else last_bad_after_back - restart[1]) if restart else None
    outside_5xx = sum(n for key, n in bad_outside.items()
                      if str(key.rsplit(": ", 1)[1]).startswith("5"))
    boots = len(re.findall(r"Booting worker with pid", gunicorn_text))
    # SIGTERM is the soak's own stop at the end; anything else is a crash or a kill.
    exits = re.findall(r"^.*(?:was sent SIG(?!TERM)\w+|exited with code|WORKER TIMEOUT).*$",
                       gunicorn_text, re.MULTILINE)
    # The service logs each 500 with its traceback; its last line names the cause.
    causes = Counter(match.group(1)[:120] for match in re.finditer(
        r"unexpected error\n(?:.*\n)*?(\S+(?:Error|Exception)\S*: .*)", gunicorn_text))
    if kernel_after is None:
        kernel = "not readable (dmesg failed)"
        segfaults = []
    else:
        segfaults = [line for line in kernel_after[len(kernel_before or []):]
                     if "segfault" in line or "general protection" in line]
        kernel = f"{len(segfaults)} segfault lines" + "".join(f"\n    {s}" for s in segfaults)
    growth = {pid: (rss_end[pid] - rss_early[pid]) / rss_early[pid] * 100
              for pid in rss_early if pid in rss_end}
    killer = [thread for thread in checkers if isinstance(thread, ConnectionKiller)]
    checkers = [thread for thread in checkers if isinstance(thread, ListChecker)]
    partial = sum(checker.partial for checker in checkers)
    elapsed = max(records[-1][0] - start, 1.0) if records else 1.0
    lines = [
        f"{args.images:,} images x {K} neighbours on MariaDB; gunicorn {args.workers} workers "
        f"x {args.threads} threads (gthread); {args.clients} client threads + 2 list checkers; "
        f"{args.duration} s; service code {args.app_dir}; load average "
        f"{os.getloadavg()[0]:.2f} at the end on {os.cpu_count()} cores.",
        "",
        f"- requests: {len(records):,} ({len(records) / elapsed:,.0f}/s); by status: "
        + ", ".join(f"{k}: {v:,}" for k, v in sorted(by_status.items(), key=str)),
        f"- unexpected answers outside the restart window: {sum(bad_outside.values())} "
        f"({outside_5xx} 5xx) {dict(bad_outside) or ''}",
        "- restart window: " + (f"server down {restart[1] - restart[0]:.1f} s; unexpected "
                                 f"answers in it {dict(bad_inside)}; answers slower than 5 s: "
                                 f"{slow_inside}; good again {recovery:.2f} s after the server "
                                 "was back" if restart else "no restart"),
        f"- worker crashes/exits in gunicorn's log: {len(exits)}; workers booted: {boots} "
        f"(of them {args.workers} at start)" + "".join(f"\n    {e}" for e in exits[:10]),
        f"- kernel log: {kernel}",
        f"- 5xx in gunicorn's log by cause: {dict(causes)}",
        "- RSS per worker (MiB) at 1/6 of the run -> end: " + ", ".join(
            f"{rss_early[p] / 1024:.0f} -> {rss_end[p] / 1024:.0f} ({growth[p]:+.1f} %)"
            for p in growth) + (" (a worker was replaced)" if len(growth) < args.workers
                                else ""),
        f"- list rewrites (grouping job's write_lists): {writer.rewrites:,}, errors "
        f"{dict(writer.errors)}; lists checked {sum(c.checked for c in checkers):,}, "
        f"partial {partial}",
        f"- sessions killed (KILL CONNECTION): {killer[0].kills if killer else 'none asked'}",
        f"- feature job on a new batch of {min(40, len(SAMPLES))} JPEGs (during the run): "
        f"{job_result}",
    ]
    wrk_missed = False
    if wrk:
        lines.append(f"- the service alone (wrk, {WRK_CONNECTIONS} connections, "
                     f"{args.wrk_seconds} s; targets >= {TARGET_RPS:,} req/s, p99 <= "
                     f"{TARGET_P99_MS} ms), before the soak -> after it (after "
                     f"{wrk.get('purge_wait', 0):.0f} s for InnoDB's purge of the rewrites):")
        for label, _ in WRK_RUNS:
            runs = [wrk[when][label] for when in ("start", "end") if when in wrk]
            lines.append(f"    {label}: " + " -> ".join(
                f"{r['rps']:,.0f} req/s, p99 {r['p99_us'] / 1000:.1f} ms, "
                f"{r['errors']} errors" for r in runs))
            end = wrk.get("end", {}).get(label)
            wrk_missed |= end is None or end["rps"] < TARGET_RPS or \
                end["p99_us"] / 1000 > TARGET_P99_MS or end["errors"] > 0
    lines += ["", "Mixed traffic (client threads in this script, on the same cores):", "",
              "| endpoint | requests | p50 ms | p99 ms |", "|---|---:|---:|---:|"]
    for _label, *_ in requests_mix(args.images):
        values = sorted(latencies.get(_label, []))
        if values:
            lines.append(f"| {_label} | {len(values):,} | {values[len(values) // 2] * 1000:.1f}"
                         f" | {values[int(len(values) * 0.99)] * 1000:.1f} |")
    failed = bool(exits or segfaults or outside_5xx or partial or slow_inside or wrk_missed
                  or (recovery is not None and recovery > 5.0)
                  or any(g > 5.0 for g in growth.values())
                  or bad_inside.get("503 without JSON"))
    return "\n".join(lines), failed


if __name__ == "__main__":
    main()
