"""Title search cost at page 1 and page 5,000: keyset paging over title_words must not
grow with the page.

    .venv/bin/python bench/bench_title_search.py --mariadb-url mysql+mysqlconnector://root@127.0.0.1:3307/
        [--images 1000000] [--limit 20] [--page 5000] [--rounds 100] [--database NAME]

Builds a scratch database on the MariaDB server (generated rows, no model, no files):
--images images (bench_browse.py's paths), each with a catalogue record whose title is
2 to 6 words drawn from a seeded vocabulary of 20,000 made-up words, a few of them
common (one in four titles has "der", one in eight "bildnis"), plus an accented name,
and the title words written by the import's own code (db/title_words.py). Then, through
the service's own Flask application (test client, no HTTP), asks for the first page and
for the second page and page --page of GET /api/v1/images/search for: a common word, a prefix of two
letters, two words. The anchor of page N is reached once by following `next` (not
timed), which also checks that each page follows the last. The three are timed in
alternation --rounds times; medians and the ratio page N / page 2 are printed (page 1
needs neither the anchor's look-up nor the check for a previous page).
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from sqlalchemy import func, insert, select, text  # noqa: E402

from bench_browse import COLLECTIONS, image_path, kept_database, timed  # noqa: E402
from db.engine import make_engine, upgrade  # noqa: E402
from db.models import CatalogueRecord, Image, title_key  # noqa: E402
from db.paths import text_hash as path_hash  # noqa: E402
from db.scratch import scratch_database  # noqa: E402
from db.title_words import replace_words  # noqa: E402

CHUNK = 10_000
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "te", "vi", "bo", "da", "fe", "gu", "ha",
             "jo", "ku", "li", "mo", "ni", "pa", "ro", "si", "tu", "wa", "ze"]
NAMES = ["Dürer", "Éluard", "Munch", "Ångström", "Čapek", "Øverland", "Münter", "Renoir"]


def title_of(rng: random.Random, vocabulary: list[str]) -> str:
    words = [rng.choice(vocabulary) for _ in range(rng.randint(1, 4))]
    if rng.random() < 0.25:
        words.insert(0, "der")
    if rng.random() < 0.125:
        words.append("Bildnis")
    if rng.random() < 0.3:
        words.append(f"({rng.choice(NAMES)})")
    return " ".join(words).capitalize()


def build(url: str, images: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    rng = random.Random(25)
    vocabulary = sorted({"".join(rng.choices(SYLLABLES, k=rng.randint(2, 4)))
                         for _ in range(20_000)})
    per_collection = -(-images // COLLECTIONS)
    started = time.perf_counter()
    for first in range(1, images + 1, CHUNK):
        ids = range(first, min(first + CHUNK, images + 1))
        rows, records = [], {}
        for image_id in ids:
            path = image_path(image_id, per_collection)
            rows.append({"id": image_id, "path": path, "path_hash": path_hash(path),
                         "file_name": path.rsplit("/", 1)[1], "status": "ok",
                         "needs_grouping": False})
            records[image_id] = (f"INV-{image_id:08d}", title_of(rng, vocabulary))
        with engine.begin() as connection:
            connection.execute(insert(Image), rows)
            connection.execute(insert(CatalogueRecord), [
                {"image_id": i, "external_id": e, "title": t, "title_key": title_key(t),
                 "excluded": False} for i, (e, t) in records.items()])
            replace_words(connection, records)
        if first // CHUNK % 20 == 0:
            print(f"  {first + len(ids) - 1:,} rows, {time.perf_counter() - started:.0f} s",
                  file=sys.stderr, flush=True)
    with engine.begin() as connection:
        connection.execute(text("ANALYZE TABLE images, catalogue_records, title_words"))
    print(f"built {images:,} images, records and words in "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    engine.dispose()


@contextmanager
def scratch_built(server_url: str, images: int):
    with scratch_database(server_url, prefix="bench_titles") as url:
        build(url, images)
        yield url


def page_url(client, first: str, page: int) -> str | None:
    """Follow `next` from the first page to page `page`; return its URL (None if the
    results end before)."""
    url = first
    for _ in range(page - 1):
        body = client.get(url).get_json()
        url = body["next"]
        if url is None:
            return None
    return url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mariadb-url", required=True)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--page", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--database", help="keep (and reuse) the database by this name")
    args = parser.parse_args()
    if args.database:
        import bench_browse
        bench_browse.build = build  # the kept database is built with titles
        database = kept_database(args.mariadb_url, args.database, args.images)
    else:
        database = scratch_built(args.mariadb_url, args.images)
    with database as url:
        engine = make_engine(url)
        with engine.connect() as connection:
            words = connection.execute(select(func.count()).select_from(
                text("title_words"))).scalar_one()
            images = connection.execute(select(func.count()).select_from(Image)).scalar_one()
        engine.dispose()
        from runtime.settings import load_settings
        from service import create_app
        app = create_app(load_settings({"DATABASE_URL": url}, env={}, env_file=None))
        client = app.test_client()
        print(f"\n{images:,} images, {words:,} title words, {args.limit} per page, "
              f"page 1 vs page {args.page:,}, {args.rounds} rounds each, medians\n")
        print("| query | results at least | page 1 ms | page 2 ms | page N ms | N / 2 | "
              "p90 2 / N ms |")
        print("|---|---|---|---|---|---|---|")
        for query in ("der", "bildnis", "ka", "der bildnis", "munch"):
            first = f"/api/v1/images/search?q={quote(query)}&limit={args.limit}"
            started = time.perf_counter()
            second, later = page_url(client, first, 2), page_url(client, first, args.page)
            walked = time.perf_counter() - started
            if later is None:
                print(f"| {query} | fewer than {args.page * args.limit:,} | – | – | – | – | "
                      f"(walked in {walked:.0f} s) |", flush=True)
                continue
            urls = (first, second, later)
            for url_ in urls:  # warm: the pages' index blocks in the pool
                for _ in range(5):
                    timed(client, url_)
            times = {url_: [] for url_ in urls}
            for _ in range(args.rounds):
                for url_ in urls:
                    times[url_].append(timed(client, url_))
            a, b, c = (statistics.median(times[u]) * 1000 for u in urls)
            p90 = [statistics.quantiles(times[u], n=10)[-1] * 1000 for u in (second, later)]
            print(f"| {query} | {args.page * args.limit:,} | {a:.2f} | {b:.2f} | {c:.2f} | "
                  f"{c / b:.2f} | {p90[0]:.2f} / {p90[1]:.2f} |", flush=True)
        app.extensions["db_engine"].dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
