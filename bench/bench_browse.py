"""Browse and look-up cost at page 1 and page 5,000: keyset paging must not grow with it.

    .venv/bin/python bench/bench_browse.py --mariadb-url mysql+mysqlconnector://root@127.0.0.1:3315/
        [--images 1000000] [--limit 50] [--page 5000] [--rounds 200] [--database NAME]

Builds a scratch database on the MariaDB server (generated rows, no model, no files):
--images images in three collections of boxes of 1,000 (non-ASCII folder and file
names, 1 in 10 'failed'), each with a catalogue record. Then, through the service's own
Flask application (test client, no HTTP), asks for the first page and for page --page
of: id order, path order, path order within one collection (which lists its 334
subfolders on every page), the same with status 'ok', status 'ok' in path order, and
looks up an early and a late external id. Each pair is timed in alternation --rounds
times; the medians and their ratio (page N / page 1) are printed.
The anchors of page N are found once beforehand with OFFSET (not timed).
--database NAME keeps the database under that name instead of a scratch one: built on
the first run (or when its image count differs from --images), reused by later runs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent

from contextlib import contextmanager  # noqa: E402

from sqlalchemy import create_engine, func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from db.engine import make_engine, upgrade  # noqa: E402
from db.models import CatalogueRecord, Image, path_key  # noqa: E402
from db.paths import text_hash as path_hash  # noqa: E402
from db.scratch import scratch_database  # noqa: E402

COLLECTIONS = 3
BOX = 1000
CHUNK = 10_000


def image_path(image_id: int, per_collection: int) -> str:
    collection = (image_id - 1) // per_collection
    box = ((image_id - 1) % per_collection) // BOX
    return f"Sammlung {collection} – Ärchiv/Kasten {box:04d}/Blatt {image_id:07d} ü.jpg"


def build(url: str, images: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    per_collection = -(-images // COLLECTIONS)
    started = time.perf_counter()
    for first in range(1, images + 1, CHUNK):
        ids = range(first, min(first + CHUNK, images + 1))
        rows = []
        for image_id in ids:
            path = image_path(image_id, per_collection)
            rows.append({"id": image_id, "path": path, "path_hash": path_hash(path),
                         "file_name": path.rsplit("/", 1)[1], "size": 100_000,
                         "mtime_ns": 0, "width": 1024, "height": 768,
                         "status": "failed" if image_id % 10 == 0 else "ok",
                         "needs_grouping": False})
        with engine.begin() as connection:
            connection.execute(insert(Image), rows)
            connection.execute(insert(CatalogueRecord), [
                {"image_id": i, "external_id": f"INV-{i:08d}", "title": f"Blatt {i}",
                 "title_key": f"blatt {i}", "excluded": False} for i in ids])
        if first // CHUNK % 20 == 0:
            print(f"  {first + len(ids) - 1:,} rows, {time.perf_counter() - started:.0f} s",
                  file=sys.stderr)
    with engine.begin() as connection:
        connection.execute(text("ANALYZE TABLE images, catalogue_records"))
    print(f"built {images:,} images and records in {time.perf_counter() - started:.0f} s",
          file=sys.stderr)
    engine.dispose()


@contextmanager
def kept_database(server_url: str, name: str, images: int):
    """Yield the URL of database `name`, built with `images` images unless it has them."""
    if not name.replace("_", "").isalnum():  # an identifier: never a bound parameter
        raise SystemExit(f"--database must be letters, digits and _, got {name!r}")
    server = make_url(server_url)
    admin = create_engine(server.set(database=None))
    with admin.begin() as connection:
        connection.execute(text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET "
                                "utf8mb4 COLLATE utf8mb4_bin"))
    admin.dispose()
    url = server.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(Image)).scalar_one()
    engine.dispose()
    if count != images:
        if count:
            raise SystemExit(f"database {name} has {count:,} images, not {images:,}: "
                             "drop it or name another")
        build(url, images)
    else:
        print(f"reusing {name}: {count:,} images", file=sys.stderr)
    yield url


@contextmanager
def scratch_built(server_url: str, images: int):
    with scratch_database(server_url, prefix="bench_browse") as url:
        build(url, images)
        yield url


def anchor(engine, order, offset, folder=None, status=None) -> int:
    """Return the id of the image at position `offset` in this view (OFFSET: once)."""
    query = select(Image.id)
    if folder:
        prefix = path_key(folder + "/")
        query = query.where(Image.path_key >= prefix,
                            Image.path_key < prefix[:-1] + b"0")
    if status:
        query = query.where(Image.status == status)
    columns = [Image.id] if order == "id" else [Image.path_key, Image.id]
    with engine.connect() as connection:
        return connection.execute(query.order_by(*columns).offset(offset).limit(1)).scalar_one()


def timed(client, url: str) -> float:
    started = time.perf_counter()
    response = client.get(url)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, (url, response.status_code, response.data[:200])
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mariadb-url", required=True)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--page", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--database", help="keep (and reuse) the database by this name")
    args = parser.parse_args()
    offset = (args.page - 1) * args.limit
    folder = "Sammlung 1 – Ärchiv"
    if offset >= args.images // COLLECTIONS * 0.9:
        raise SystemExit(f"page {args.page} of {args.limit} does not fit in one collection "
                         f"of {args.images // COLLECTIONS:,} images: use more --images")
    database = (kept_database(args.mariadb_url, args.database, args.images)
                if args.database else scratch_built(args.mariadb_url, args.images))
    with database as url:
        engine = make_engine(url)
        f = quote(folder)
        base = f"/api/v1/browse?limit={args.limit}"
        pairs = {
            "id order": (f"{base}", f"{base}&after={anchor(engine, 'id', offset - 1)}"),
            "id order, page 2 vs N": (f"{base}&after={anchor(engine, 'id', args.limit - 1)}",
                                      f"{base}&after={anchor(engine, 'id', offset - 1)}"),
            "path order": (f"{base}&order=path",
                           f"{base}&order=path&after={anchor(engine, 'path', offset - 1)}"),
            "folder, path order": (
                f"{base}&order=path&folder={f}",
                f"{base}&order=path&folder={f}&after="
                f"{anchor(engine, 'path', offset - 1, folder)}"),
            "folder, status ok, path order": (
                f"{base}&folder={f}&status=ok",
                f"{base}&folder={f}&status=ok&after="
                f"{anchor(engine, 'path', offset - 1, folder, 'ok')}"),
            "path order, page 2 vs N": (
                f"{base}&order=path&after={anchor(engine, 'path', args.limit - 1)}",
                f"{base}&order=path&after={anchor(engine, 'path', offset - 1)}"),
            "status ok, path order": (
                f"{base}&order=path&status=ok",
                f"{base}&order=path&status=ok&after="
                f"{anchor(engine, 'path', offset - 1, None, 'ok')}"),
            "lookup by external id (early vs late)": (
                "/api/v1/images/lookup?external_id=INV-00000001",
                f"/api/v1/images/lookup?external_id=INV-{args.images * 3 // 4:08d}"),
        }
        engine.dispose()
        from service import create_app
        from runtime.settings import load_settings
        app = create_app(load_settings({"DATABASE_URL": url}, env={}, env_file=None))
        client = app.test_client()
        print(f"\n{args.images:,} images, {args.limit} per page, page 1 vs page "
              f"{args.page:,} (position {offset:,}), {args.rounds} rounds each, medians\n")
        print("| view | page 1 ms | page N ms | N / 1 | p90 1 / N ms |")
        print("|---|---|---|---|---|")
        for name, (first, later) in pairs.items():
            for url_ in (first, later):  # warm: the pages' index blocks in the pool
                for _ in range(5):
                    timed(client, url_)
            times = {first: [], later: []}
            for _ in range(args.rounds):
                for url_ in (first, later):
                    times[url_].append(timed(client, url_))
            a, b = (statistics.median(times[u]) * 1000 for u in (first, later))
            p90 = [statistics.quantiles(times[u], n=10)[-1] * 1000 for u in (first, later)]
            print(f"| {name} | {a:.2f} | {b:.2f} | {b / a:.2f} | "
                  f"{p90[0]:.2f} / {p90[1]:.2f} |", flush=True)
        app.extensions["db_engine"].dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
