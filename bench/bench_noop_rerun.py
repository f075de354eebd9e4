"""Measure a rerun over 100,000 unchanged files: the feature job must take seconds.

Generates FILES small files named .jpg under a folder outside the repository (once; they
need not be real JPEGs: an unchanged file is never opened), registers them as 'ok' rows
with a direct bulk insert, then times in the same process:

- floor: the bare walk (os.scandir + stat of every file), what any rerun must pay;
- no-op rerun: jobs.features.job.run over the registered folder (migrations check, job row,
  walk, one paged query of all rows, plan; nothing to decode: the model stand-in given to
  it raises if it is ever called);
- naive baseline: the same walk with one SELECT per file (what a per-file job does),
  timed on a sample of SAMPLE files and scaled to all files.

Each on SQLite and, with --mariadb (default TEST_MARIADB_URL), on MariaDB.

    .venv/bin/python bench/bench_noop_rerun.py [--files 100000] [--sample 10000]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent

from db.engine import make_engine, upgrade  # noqa: E402
from db.models import Image, utcnow  # noqa: E402
from jobs.features.job import run  # noqa: E402
from jobs.features.scan import scan  # noqa: E402
from runtime.settings import load_settings  # noqa: E402

PER_FOLDER = 1000


class NoModel:
    """Stands in for the extractor: a no-op rerun must never run the model."""

    name = "none"

    def __call__(self, batch):
        raise AssertionError("the model was called in a no-op rerun")


def make_files(count: int) -> Path:
    folder = Path(tempfile.gettempdir()) / f"bench-noop-files-{count}"
    marker = folder / ".complete"
    if marker.exists():
        return folder
    for i in range(count):
        sub = folder / f"box{i // PER_FOLDER:04d}"
        if i % PER_FOLDER == 0:
            sub.mkdir(parents=True, exist_ok=True)
        (sub / f"scan_{i:07d}.jpg").write_bytes(i.to_bytes(4, "big"))
    marker.write_text("")
    return folder


def register_all(url: str, root: Path) -> None:
    engine = make_engine(url)
    upgrade(engine)
    now = utcnow()
    rows = [{"path": f.rel, "path_hash": f.path_hash, "file_name": f.file_name,
             "size": f.size, "mtime_ns": f.mtime_ns, "content_hash": "0" * 64,
             "width": 1, "height": 1, "status": "ok", "needs_grouping": False,
             "created_at": now, "updated_at": now} for f in scan(root).files]
    with engine.begin() as connection:
        for start in range(0, len(rows), 10_000):
            connection.execute(insert(Image), rows[start:start + 10_000])
    engine.dispose()


def bare_walk(root: Path) -> float:
    started = time.perf_counter()
    count = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.name.lower().endswith((".jpg", ".jpeg")):
                    entry.stat()
                    count += 1
    return time.perf_counter() - started


def noop_rerun(url: str, root: Path, expected: int) -> float:
    settings = load_settings({"DATABASE_URL": url, "IMAGE_ROOT": str(root)}, env={},
                             env_file=None)
    started = time.perf_counter()
    counts = run(settings, quiet=True, extractor=NoModel())
    elapsed = time.perf_counter() - started
    assert counts["unchanged"] == expected and counts["new"] == 0, counts
    return elapsed


def per_file_queries(url: str, root: Path, sample: int) -> float:
    """Return seconds for `sample` files walked and looked up one SELECT at a time."""
    engine = make_engine(url)
    files = scan(root).files[:sample]
    started = time.perf_counter()
    with engine.connect() as connection:
        for file in files:
            os.stat(os.path.join(root, file.rel))
            digest = hashlib.sha256(os.fsencode(file.rel)).hexdigest()
            row = connection.execute(select(Image.size, Image.mtime_ns)
                                     .where(Image.path_hash == digest)).one()
            assert (row.size, row.mtime_ns) == (file.size, file.mtime_ns)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=10_000)
    parser.add_argument("--mariadb", default=os.environ.get("TEST_MARIADB_URL"))
    args = parser.parse_args()

    root = make_files(args.files)
    bare_walk(root)  # warm the inode cache alike for all
    print(f"{args.files} unchanged files; cpu cores {os.cpu_count()}; 1-min load average "
          f"{os.getloadavg()[0]:.2f}")
    print(f"{'':10} {'bare walk':>10} {'no-op rerun':>12} {'per-file SELECT':>16} "
          f"{'rerun/walk':>11} {'per-file/rerun':>15}")
    kinds = ["sqlite"] + (["mariadb"] if args.mariadb else [])
    with tempfile.TemporaryDirectory(prefix="bench-noop-") as work:
        for kind in kinds:
            if kind == "sqlite":
                url, admin, name = f"sqlite:///{Path(work) / 'images.sqlite3'}", None, None
            else:
                server = make_url(args.mariadb)
                name = f"bench_{uuid.uuid4().hex[:12]}"
                admin = create_engine(server.set(database=None))
                with admin.begin() as connection:
                    connection.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET "
                                            "utf8mb4 COLLATE utf8mb4_bin"))
                url = server.set(database=name).render_as_string(hide_password=False)
            try:
                register_all(url, root)
                walk = bare_walk(root)
                rerun = noop_rerun(url, root, args.files)
                naive = per_file_queries(url, root, args.sample) * args.files / args.sample
                print(f"{kind:10} {walk:9.2f}s {rerun:11.2f}s {naive:15.1f}s "
                      f"{rerun / walk:10.1f}x {naive / rerun:14.1f}x")
            finally:
                if admin is not None:
                    with admin.begin() as connection:
                        connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
                    admin.dispose()


if __name__ == "__main__":
    main()
