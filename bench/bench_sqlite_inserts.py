"""SQLite's insert rate of neighbour rows as image_neighbours grows, and what keeps it
flat: the grouping job's own writer (db.neighbours.write_lists, 2048 lists of k = 100
per transaction, in id order as a full run writes them) into a fresh file per variant:

- as it is: the connection's pragmas from db.engine.make_engine;
- cache_size: the same with a page cache of CACHE_MB (PRAGMA cache_size on each
  connection, SQLAlchemy's connect event);
- index after: the neighbour_id index dropped before and built after the writes, as a
  full grouping run on SQLite now does (db.neighbours.neighbour_index_after; the build
  counted in the total).

Neighbour ids are random (a list's neighbours are anywhere in the collection), distances
increase along each list. Prints rows/s per segment of the table and in total.

    .venv/bin/python bench/bench_sqlite_inserts.py [--images 12000] [--segment 150000]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import event

from bench_grouping import fill_database
from db.engine import make_engine
from db.models import POOL3, SPACE_IDS
from db.neighbours import neighbour_index_after, write_lists
from numerics.list_changes import ListChanges

K = 100
LISTS = 2048
CACHE_MB = 256


def run(url: str, ids: np.ndarray, segment: int, variant: str):
    """Write every list; return ([(rows so far, rows/s of the segment)], rows/s in all,
    seconds of the index build)."""
    engine = make_engine(url)
    if variant == "cache_size":
        @event.listens_for(engine, "connect")
        def _cache(dbapi_connection, _record):
            dbapi_connection.execute(f"PRAGMA cache_size = -{CACHE_MB * 1024}")
    rng = np.random.default_rng(1)
    rates, written, mark = [], 0, 0
    started = segment_started = time.perf_counter()
    with neighbour_index_after(engine, variant == "index after"):
        for start in range(0, len(ids), LISTS):
            block = ids[start:start + LISTS]
            neighbours = rng.choice(ids, size=(len(block), K))
            distances = np.sort(rng.random((len(block), K)) * 20 + 1, axis=1)
            write_lists(engine, SPACE_IDS[POOL3],
                        ListChanges.replacing(block, neighbours, distances))
            written += neighbours.size
            if written - mark >= segment:
                now = time.perf_counter()
                rates.append((written, (written - mark) / (now - segment_started)))
                mark, segment_started = written, now
        writes_done = time.perf_counter()
    total = time.perf_counter() - started
    engine.dispose()
    return rates, written / total, time.perf_counter() - writes_done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12000)
    parser.add_argument("--segment", type=int, default=150000)
    parser.add_argument("--variants", default="as it is,cache_size,index after")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; "
          f"{args.images} lists of {K} = {args.images * K} rows")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as folder:
        template = Path(folder) / "template.sqlite3"
        ids = np.array(fill_database(f"sqlite:///{template}",
                                     np.zeros((args.images, 4), np.float32)))
        for variant in args.variants.split(","):
            path = Path(folder) / "run.sqlite3"
            path.write_bytes(template.read_bytes())
            rates, overall, build = run(f"sqlite:///{path}", ids, args.segment, variant)
            print(f"{variant}: " + ", ".join(f"{rows / 1e6:.2f}M {rate:,.0f}/s"
                                               for rows, rate in rates)
                  + f"; total {overall:,.0f} rows/s"
                  + (f" (index build {build:.1f} s included)" if variant == "index after"
                     else "")
                  + f"; file {os.path.getsize(path) / 1e6:.0f} MB")
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
