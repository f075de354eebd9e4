#!/usr/bin/env python3
"""Measure the neighbour engine and group_images.py against baselines run alongside.

    .venv/bin/python bench/bench_grouping.py
        [--sections engine,backend,legacy,e2e,incremental,spaces,augmented]
        [--n 50000] [--queries 8192] [--big-n 200000] [--legacy-n 3000] [--e2e-n 10000]
        [--inc-n 20000] [--inc-m 1000] [--spaces-n 50000] [--spaces-d 256] [--k 100]
        [--aug-n 50000] [--aug-m 1000] [--aug-k 3] [--aug-vectors DATABASE_URL]
        [--rounds 3] [--all-rounds 2]
        [--mariadb-url URL] [--no-sqlite]

Data: seeded, d = 2048, non-negative like pool_3 (ReLU of clustered Gaussians). Every
section prints its own baseline from the same run and the ratio; absolute times vary
with the machine and its load. Sizes are options so that the whole set fits the time
at hand; where a size is measured on a subset of query rows and scaled, it says so
(the cost of every method here is linear in the number of query rows).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

from numerics.engine import ExactIndex  # noqa: E402

D = 2048


def pool3_like(n: int, seed: int = 0) -> np.ndarray:
    """Return n non-negative float32 vectors in clusters, like pool_3 features."""
    out = np.empty((n, D), dtype=np.float32)
    for start, part in pool3_like_parts(n, seed):
        out[start:start + len(part)] = part
    return out


def pool3_like_parts(n: int, seed: int = 0, rows: int = 8192):
    """Yield (first row, vectors) a part of `rows` at a time: a collection like
    pool3_like(n, seed) (the same vectors at the default `rows`) without holding it all
    (8 GB at a million)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, n // 50), D)).astype(np.float32)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        part = rng.standard_normal((stop - start, D), dtype=np.float32)
        part += centres[rng.integers(0, len(centres), stop - start)]
        yield start, np.maximum(part, 0, out=part)


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def section_engine(args, report):
    import faiss

    faiss.omp_set_num_threads(os.cpu_count())
    for n, queries in ((args.n, args.queries), (args.big_n, args.big_queries)):
        if not n:
            continue
        base = pool3_like(n, seed=1)
        ids = np.arange(1, n + 1)
        queries = min(queries, n)
        flop = 2 * queries * n * D
        index = ExactIndex(base, ids)
        flat = None
        if n == args.n:
            flat = faiss.IndexFlatL2(D)
            flat.add(base)
        # Interleaved rounds, best of each: other load on the machine comes and goes,
        # and must not land on one method only.
        best = {"matmul": np.inf, "engine": np.inf, "faiss": np.inf}
        for _ in range(args.rounds):
            best["matmul"] = min(best["matmul"], timed(np.matmul, base[:queries],
                                                       base.T)[0])
            best["engine"] = min(best["engine"], timed(
                index.search, base[:queries], ids[:queries], args.k,
                args.memory_mb << 20)[0])
            if flat is not None:
                best["faiss"] = min(best["faiss"], timed(flat.search, base[:queries],
                                                         args.k + 1)[0])
        rate, engine_rate = flop / best["matmul"] / 1e9, flop / best["engine"] / 1e9
        report(f"engine N={n:,} d={D} k={args.k}, {queries:,} query rows (best of "
               f"{args.rounds}): {best['engine']:.2f} s = {engine_rate:.1f} GFLOP/s "
               f"equivalent; the bare float32 product of the same rows {best['matmul']:.2f}"
               f" s = {rate:.1f} GFLOP/s -> engine at {engine_rate / rate:.0%} of the "
               f"product rate; all {n:,} rows ~ {best['engine'] * n / queries:.0f} s")
        if flat is not None:
            report(f"faiss IndexFlatL2 search k+1={args.k + 1}, same rows (best of "
                   f"{args.rounds}): {best['faiss']:.2f} s -> engine "
                   f"{best['faiss'] / best['engine']:.2f}x as fast")
            # What a full run does: every row against every row, each block used twice.
            # Each run of it sits between measurements of faiss and of the bare product
            # on the query rows above, so that both sides of the ratio see the same load.
            best_all, ratios = np.inf, []
            for _ in range(args.all_rounds):
                around = []
                for turn in range(2):
                    if turn:
                        seconds, _ = timed(lambda: list(index.search_all(
                            args.k, args.memory_mb << 20)))
                        best_all = min(best_all, seconds)
                    faiss_seconds = timed(flat.search, base[:queries], args.k + 1)[0]
                    matmul_seconds = timed(np.matmul, base[:queries], base.T)[0]
                    best["faiss"] = min(best["faiss"], faiss_seconds)
                    best["matmul"] = min(best["matmul"], matmul_seconds)
                    around.append(faiss_seconds)
                ratios.append(min(around) * n / queries / seconds)
            rate = flop / best["matmul"] / 1e9
            faiss_all = best["faiss"] * n / queries
            report(f"engine all pairs (search_all, the full run) N={n:,}, best of "
                   f"{args.all_rounds}: {best_all:.1f} s = "
                   f"{2 * n * n * D / best_all / 1e9:.1f} GFLOP/s of the N x N product "
                   f"({2 * n * n * D / best_all / 1e9 / rate:.0%} of the best product rate, "
                   f"{rate:.1f} GFLOP/s); faiss for all {n:,} queries, scaled from its best "
                   f"on the rows above: {faiss_all:.1f} s -> engine {faiss_all / best_all:.2f}x"
                   f" as fast (each round against the faiss runs beside it: "
                   f"{', '.join(f'{r:.2f}x' for r in ratios)})")
            try:
                import tensorflow as tf
                q, b = tf.constant(base[:queries]), tf.constant(base)
                seconds = min(timed(lambda: tf.linalg.matmul(q, b, transpose_b=True)
                                    .numpy())[0] for _ in range(2))
                report(f"backend choice: tf.linalg.matmul {flop / seconds / 1e9:.1f} "
                       f"GFLOP/s vs numpy (OpenBLAS) {rate:.1f} GFLOP/s")
            except ImportError:
                pass
        del base, index, flat


def section_spaces(args, report):
    """The learned space's full run against the original's on the same vectors.

    Both through ExactIndex.search_all, in alternating rounds, best of each; the
    whitened side counts the projection of every vector (each run does it) and, apart,
    the learning (done once)."""
    from datetime import datetime

    from numerics.whitening import learn

    n, dimensions = args.spaces_n, args.spaces_d
    base = pool3_like(n, seed=3)
    ids = np.arange(1, n + 1)
    learning, projection = timed(learn, base, dimensions, datetime.now(), shrinkage=0.5)
    best = {"pool3": np.inf, "whitened": np.inf, "projection": np.inf}
    for _ in range(args.rounds):
        best["projection"] = min(best["projection"], timed(projection.apply, base)[0])
        projected = projection.apply(base)
        for name, vectors in (("pool3", base), ("whitened", projected)):
            index = ExactIndex(vectors, ids)
            best[name] = min(best[name], timed(lambda: list(index.search_all(
                args.k, args.memory_mb << 20)))[0])
    whitened = best["whitened"] + best["projection"]
    report(f"spaces N={n:,} k={args.k}, full run's lists (search_all, best of {args.rounds}):"
           f" pool3 d={D} {best['pool3']:.1f} s; whitened d={projection.dimensions} "
           f"{best['whitened']:.1f} s + projecting every vector {best['projection']:.1f} s "
           f"= {whitened:.1f} s -> {best['pool3'] / whitened:.1f}x cheaper "
           f"({best['pool3'] / best['whitened']:.1f}x without the projection); learning "
           f"the space once: {learning:.1f} s")


def section_backend(args, report):
    """Compare numpy (OpenBLAS) and tf.linalg.matmul on the engine's product, interleaved."""
    import tensorflow as tf

    base = pool3_like(args.n, seed=5)
    query = base[:args.queries]
    q, b = tf.constant(query), tf.constant(base)
    flop = 2 * len(query) * len(base) * D
    best = {"numpy": np.inf, "tensorflow": np.inf}
    for _ in range(args.rounds + 1):  # the first TF call also builds its kernels
        best["numpy"] = min(best["numpy"], timed(np.matmul, query, base.T)[0])
        best["tensorflow"] = min(best["tensorflow"], timed(
            lambda: tf.linalg.matmul(q, b, transpose_b=True).numpy())[0])
    rates = {name: flop / seconds / 1e9 for name, seconds in best.items()}
    report(f"backend, {len(query):,} x {len(base):,} x {D} float32 product, interleaved, best"
           f" of {args.rounds + 1}: numpy {rates['numpy']:.1f} GFLOP/s, tf.linalg.matmul "
           f"{rates['tensorflow']:.1f} GFLOP/s")


def legacy_knn(json_batches: list[list[str]], k: int):
    """The replaced system's algorithm, re-implemented: JSON batches, np.append, argsort."""
    from scipy.spatial.distance import cdist

    neighbours = []
    for batch in json_batches:
        rows = np.array([json.loads(text) for text in batch])
        distances = np.empty((len(rows), 0))
        for other in json_batches:  # every batch is loaded again for every batch
            columns = np.array([json.loads(text) for text in other])
            distances = np.append(distances, cdist(rows, columns), axis=1)
        order = np.argsort(distances, axis=1)[:, 1:k + 1]  # column 0: the image itself
        neighbours.append((order, np.take_along_axis(distances, order, axis=1)))
    return neighbours


def section_legacy(args, report):
    n = args.legacy_n
    base = pool3_like(n, seed=2)
    texts = [json.dumps(v.tolist()) for v in base]
    batches = [texts[start:start + 1000] for start in range(0, n, 1000)]
    legacy_seconds, _ = timed(legacy_knn, batches, args.k)
    ids = np.arange(1, n + 1)

    def engine():
        loaded = np.array([json.loads(text) for text in texts], dtype=np.float32)
        return ExactIndex(loaded, ids).search(loaded, ids, args.k, args.memory_mb << 20)
    seconds, _ = timed(engine)
    bare, _ = timed(lambda: ExactIndex(base, ids).search(base, ids, args.k,
                                                         args.memory_mb << 20))
    report(f"replaced algorithm (1,000-row JSON batches, cdist, np.append, argsort) N={n:,}"
           f" k={args.k}: {legacy_seconds:.1f} s; engine incl. decoding the same JSON once: "
           f"{seconds:.1f} s -> {legacy_seconds / seconds:.1f}x faster; engine on the "
           f"binary vectors as stored now: {bare:.2f} s -> {legacy_seconds / bare:.0f}x faster")


def fill_database(url: str, vectors: np.ndarray) -> list[int]:
    """Create the schema and insert images with features; return their ids."""
    from sqlalchemy import insert, select

    from db.engine import make_engine, upgrade
    from db.models import Image, ImageFeatures
    from numerics.vectors import MODEL_NAME

    engine = make_engine(url)
    upgrade(engine)
    ids = []
    with engine.begin() as connection:
        first = connection.execute(select(Image.id).order_by(Image.id.desc()).limit(1)) \
            .scalar() or 0
    for start in range(0, len(vectors), 2000):
        part = vectors[start:start + 2000]
        paths = [f"bench/{uuid.uuid4().hex}.jpg" for _ in part]
        with engine.begin() as connection:
            connection.execute(insert(Image), [
                {"path": p, "path_hash": hashlib.sha256(p.encode()).hexdigest(),
                 "file_name": p[6:], "status": "ok", "needs_grouping": True}
                for p in paths])
            found = dict(connection.execute(select(Image.path, Image.id)
                                            .where(Image.id > first)
                                            .where(Image.path.in_(paths))).all())
            part_ids = [found[p] for p in paths]
            connection.execute(insert(ImageFeatures), [
                {"image_id": i, "model": MODEL_NAME, "vector": v.astype("<f4").tobytes()}
                for i, v in zip(part_ids, part)])
            ids += part_ids
    engine.dispose()
    return ids


def run_job(url: str, k: int, cache: str, whitened: int, *extra,
            augmented: int = 0) -> tuple[float, str]:
    env = {**os.environ, "DATABASE_URL": url, "NEIGHBOURS_K": str(k), "VECTOR_CACHE": cache,
           "WHITENED_DIMENSIONS": str(whitened), "AUGMENTED_K": str(augmented)}
    seconds, result = timed(subprocess.run,
                            [sys.executable, str(ROOT / "group_images.py"), "--quiet", *extra],
                            env=env, cwd=ROOT, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(result.stderr)
    return seconds, result.stdout.strip()


class Databases:
    """A fresh SQLite file (unless left out) and, given a server, a fresh MariaDB database."""

    def __init__(self, mariadb_url: str | None, sqlite: bool = True,
                 vector_cache: bool = True):
        self.folder = tempfile.TemporaryDirectory(prefix="bench-grouping-")
        self.mariadb_url, self.sqlite, self.vector_cache = mariadb_url, sqlite, vector_cache
        self.created = []

    def urls(self, label: str):
        if self.sqlite:
            yield "SQLite", f"sqlite:///{self.folder.name}/{label}.sqlite3"
        if self.mariadb_url:
            from sqlalchemy import create_engine, text
            from sqlalchemy.engine import make_url
            server = make_url(self.mariadb_url)
            name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
            admin = create_engine(server.set(database=None))
            with admin.begin() as connection:
                connection.execute(text(f"CREATE DATABASE `{name}`"))
            self.created.append((admin, name))
            with admin.connect() as connection:
                pool = connection.execute(text("SELECT @@innodb_buffer_pool_size")).scalar()
            # Pages of the neighbour table not in the pool are disk reads in the runs.
            print(f"MariaDB buffer pool: {int(pool) / 2**30:.1f} GiB", flush=True)
            yield "MariaDB", server.set(database=name).render_as_string(hide_password=False)

    def cache(self, label: str) -> str:
        """Return the jobs' VECTOR_CACHE on one database ('' for none)."""
        return f"{self.folder.name}/vector-cache-{label}" if self.vector_cache else ""

    def close(self):
        from sqlalchemy import text
        for admin, name in self.created:
            with admin.begin() as connection:
                connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            admin.dispose()
        self.folder.cleanup()


def section_e2e(args, report, databases):
    n = args.e2e_n
    base = pool3_like(n, seed=3)
    ids = np.arange(1, n + 1)
    # The same computation as the job's full run: search_all, in memory, no database.
    engine_seconds, _ = timed(lambda: list(ExactIndex(base, ids).search_all(
        args.k, args.memory_mb << 20)))
    report(f"engine alone (search_all) N={n:,} k={args.k}: {engine_seconds:.1f} s")
    for label, url in databases.urls("e2e"):
        fill_database(url, base)
        seconds, summary = run_job(url, args.k, databases.cache(label), args.job_whitened)
        report(f"group_images.py end to end on {label}, N={n:,}: {seconds:.1f} s "
               f"-> {seconds / engine_seconds:.2f}x the engine alone  [{summary}]")


def section_incremental(args, report, databases):
    n, m = args.inc_n, args.inc_m
    base = pool3_like(n + m, seed=4)
    for label, url in databases.urls("inc"):
        fill_database(url, base[:n])
        full_seconds, summary = run_job(url, args.k, databases.cache(label), args.job_whitened)
        report(f"{label}: full run N={n:,}: {full_seconds:.1f} s  [{summary}]")
        fill_database(url, base[n:])
        seconds, summary = run_job(url, args.k, databases.cache(label), args.job_whitened)
        report(f"{label}: incremental run, M={m:,} new among N={n + m:,}: {seconds:.1f} s "
               f"-> {full_seconds / seconds:.1f}x cheaper than the full run  [{summary}]")


def section_augmented(args, report, databases):
    """The incremental run after M new among N with the augmented space on, against off:
    two copies of one database grouped in pool3 and whitened (D = --spaces-d), the
    augmented space then computed in one of them, the same M new images added to both."""
    import shutil

    n, m = args.aug_n, args.aug_m
    if args.aug_vectors:  # real features, in a random order: the last m are the new ones
        from db.engine import make_engine
        from db.features import load_vectors
        base = load_vectors(make_engine(args.aug_vectors))[1]
        base = base[np.random.default_rng(0).permutation(len(base))]
        n = len(base) - m
    else:
        base = pool3_like(n + m, seed=5)
    folder = Path(databases.folder.name)
    off, on = folder / "augmented-off.sqlite3", folder / "augmented-on.sqlite3"
    fill_database(f"sqlite:///{off}", base[:n])
    seconds, _ = run_job(f"sqlite:///{off}", args.k, "", args.spaces_d)
    report(f"full run, pool3 and whitened, N={n:,}: {seconds:.1f} s")
    shutil.copyfile(off, on)
    seconds, summary = run_job(f"sqlite:///{on}", args.k, "", args.spaces_d,
                               augmented=args.aug_k)
    report(f"the augmented space (AUGMENTED_K={args.aug_k}) computed whole beside them: "
           f"{seconds:.1f} s")
    times = {}
    for label, path, augmented in (("off", off, 0), ("on", on, args.aug_k)):
        fill_database(f"sqlite:///{path}", base[n:])
        times[label], summary = run_job(f"sqlite:///{path}", args.k, "", args.spaces_d,
                                        augmented=augmented)
        report(f"incremental run, M={m:,} new among N={n + m:,}, augmented space {label}: "
               f"{times[label]:.1f} s  [{' / '.join(summary.splitlines()[1:])}]")
    report(f"-> the augmented space costs {times['on'] / times['off']:.2f}x the "
           f"incremental run without it")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default="engine,backend,legacy,e2e,incremental,spaces")
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=8192)
    parser.add_argument("--big-n", type=int, default=200_000)
    parser.add_argument("--big-queries", type=int, default=2048)
    parser.add_argument("--legacy-n", type=int, default=3000)
    parser.add_argument("--e2e-n", type=int, default=10_000)
    parser.add_argument("--inc-n", type=int, default=20_000)
    parser.add_argument("--inc-m", type=int, default=1000)
    parser.add_argument("--spaces-n", type=int, default=50_000)
    parser.add_argument("--spaces-d", type=int, default=256,
                        help="WHITENED_DIMENSIONS of the spaces section")
    parser.add_argument("--job-whitened", type=int, default=0, metavar="D",
                        help="WHITENED_DIMENSIONS of the jobs in the e2e and incremental "
                             "sections (default 0: the original space only, as measured "
                             "before there were spaces)")
    parser.add_argument("--aug-n", type=int, default=50_000)
    parser.add_argument("--aug-m", type=int, default=1000)
    parser.add_argument("--aug-k", type=int, default=3, help="AUGMENTED_K of the "
                        "augmented section")
    parser.add_argument("--aug-vectors", metavar="DATABASE_URL",
                        help="the augmented section on the features stored there instead "
                             "of synthetic vectors (--aug-n: all but --aug-m of them)")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--all-rounds", type=int, default=2,
                        help="runs of search_all in the engine section")
    parser.add_argument("--memory-mb", type=int, default=2048)
    parser.add_argument("--mariadb-url", default=os.environ.get("TEST_MARIADB_URL"))
    parser.add_argument("--no-sqlite", action="store_true",
                        help="e2e and incremental sections on MariaDB only")
    parser.add_argument("--no-vector-cache", action="store_true",
                        help="the jobs without VECTOR_CACHE: every run reads every vector "
                             "from the database")
    args = parser.parse_args()
    sections = args.sections.split(",")

    def report(line):
        print(line, flush=True)

    report(f"# bench_grouping.py {' '.join(sys.argv[1:])}  ({os.cpu_count()} cores, "
           f"load average {os.getloadavg()[0]:.1f} at start)")
    databases = Databases(args.mariadb_url, sqlite=not args.no_sqlite,
                          vector_cache=not args.no_vector_cache)
    try:
        if "engine" in sections:
            section_engine(args, report)
        if "backend" in sections:
            section_backend(args, report)
        if "legacy" in sections:
            section_legacy(args, report)
        if "e2e" in sections:
            section_e2e(args, report, databases)
        if "incremental" in sections:
            section_incremental(args, report, databases)
        if "spaces" in sections:
            section_spaces(args, report)
        if "augmented" in sections:
            section_augmented(args, report, databases)
    finally:
        databases.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
