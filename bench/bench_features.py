"""Measure the feature job end to end against the extractor alone and a one-at-a-time job.

On archive-sized photos (flower photos from ../shared/data upscaled to LONG_SIDE px on
the long side, written once to a folder outside the repository), in the same process:

- extractor alone: the model on pre-decoded (n, 299, 299, 3) batches; the ceiling;
- end to end: jobs.features.job.run (walk, plan, register, read + hash + decode in threads,
  model, batched commits) into a fresh SQLite file and a fresh MariaDB database;
- one at a time: what the replaced system did: per file read, decode, model on a
  batch of one, insert the image and its features, commit.

The model is loaded once before the clock starts, for all of them. Rounds interleave the
measurements so that load from other processes hits them alike; best and median of the
rounds are printed with their ratios.

    .venv/bin/python bench/bench_features.py [--images 32] [--rounds 2] [--batch-sizes 32,8]
        [--mariadb mysql+mysqlconnector://root@127.0.0.1:3307/]   (default TEST_MARIADB_URL)
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent

from db.engine import make_engine, upgrade  # noqa: E402
from db.models import Image, ImageFeatures, utcnow  # noqa: E402
from jobs.features.job import run  # noqa: E402
from model import load_extractor  # noqa: E402
from model.preprocess import load_image  # noqa: E402
from numerics.vectors import encode_vector  # noqa: E402
from runtime.settings import load_settings  # noqa: E402

FLOWERS = ROOT.parent / "shared" / "data" / "oxford-flowers102-valtest"
MAX_PIXELS = 200_000_000


def make_photos(count: int, long_side: int) -> Path:
    """Write `count` upscaled flower photos once; return their folder."""
    folder = Path(tempfile.gettempdir()) / f"bench-features-photos-{long_side}"
    existing = sorted(folder.glob("*/*.jpg"))
    if len(existing) >= count:
        return folder
    with open(FLOWERS / "ground_truth.csv") as file:
        rows = list(csv.DictReader(file))
    step = max(1, len(rows) // count)
    for i, row in enumerate(rows[::step][:count]):
        with PILImage.open(FLOWERS / row["path"]) as photo:
            photo = photo.convert("RGB")
            scale = long_side / max(photo.size)
            photo = photo.resize((round(photo.width * scale), round(photo.height * scale)),
                                 PILImage.LANCZOS)
        target = folder / row["group"] / f"{i:05d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        photo.save(target, "JPEG", quality=90)
    return folder


def files_of(folder: Path, count: int) -> list[Path]:
    return sorted(folder.glob("*/*.jpg"))[:count]


class FreshDatabase:
    """A new empty database per measurement: a SQLite file or a MariaDB database."""

    def __init__(self, kind: str, mariadb: str | None, workdir: Path):
        self.kind, self.mariadb, self.workdir = kind, mariadb, workdir

    def __enter__(self) -> str:
        if self.kind == "sqlite":
            self.url = f"sqlite:///{self.workdir / (uuid.uuid4().hex + '.sqlite3')}"
            return self.url
        server = make_url(self.mariadb)
        self.name = f"bench_{uuid.uuid4().hex[:12]}"
        self.admin = create_engine(server.set(database=None))
        with self.admin.begin() as connection:
            connection.execute(text(f"CREATE DATABASE `{self.name}` CHARACTER SET utf8mb4 "
                                    "COLLATE utf8mb4_bin"))
        self.url = server.set(database=self.name).render_as_string(hide_password=False)
        return self.url

    def __exit__(self, *exc) -> None:
        if self.kind == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(self.url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
        else:
            with self.admin.begin() as connection:
                connection.execute(text(f"DROP DATABASE IF EXISTS `{self.name}`"))
            self.admin.dispose()


def extractor_alone(extractor, inputs: np.ndarray, batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(inputs), batch):
        extractor(inputs[start:start + batch])
    return len(inputs) / (time.perf_counter() - started)


def end_to_end(extractor, folder: Path, url: str, batch: int, limit: int,
               threads: int | None = None) -> float:
    settings = load_settings({"DATABASE_URL": url, "IMAGE_ROOT": str(folder),
                              "BATCH_SIZE": str(batch)}, env={}, env_file=None)
    started = time.perf_counter()
    counts = run(settings, quiet=True, extractor=extractor, limit=limit, threads=threads)
    elapsed = time.perf_counter() - started
    assert counts["new"] == limit and counts["failed"] == 0, counts
    return limit / elapsed


def one_at_a_time(extractor, files: list[Path], root: Path, url: str) -> float:
    """Decode, infer and commit each image on its own, as the replaced system did."""
    engine = make_engine(url)
    upgrade(engine)
    started = time.perf_counter()
    for path in files:
        data = path.read_bytes()
        array, width, height = load_image(data, MAX_PIXELS)
        vector = extractor(array[np.newaxis])[0]
        rel = path.relative_to(root).as_posix()
        now = utcnow()
        with engine.begin() as connection:
            image_id = connection.execute(insert(Image).values(
                path=rel, path_hash=hashlib.sha256(rel.encode()).hexdigest(),
                file_name=path.name, size=len(data), mtime_ns=path.stat().st_mtime_ns,
                content_hash=hashlib.sha256(data).hexdigest(), width=width, height=height,
                status="ok", needs_grouping=True, created_at=now, updated_at=now)
            ).inserted_primary_key[0]
            connection.execute(insert(ImageFeatures).values(
                image_id=image_id, model=extractor.name, vector=encode_vector(vector),
                created_at=now))
    elapsed = time.perf_counter() - started
    engine.dispose()
    return len(files) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None,
                        help="decode threads of the job (default: its own choice)")
    parser.add_argument("--batch-sizes", default="32,8",
                        help="comma-separated model/commit batch sizes to measure")
    parser.add_argument("--long-side", type=int, default=2000)
    parser.add_argument("--mariadb", default=os.environ.get("TEST_MARIADB_URL"))
    args = parser.parse_args()
    batches = [int(b) for b in args.batch_sizes.split(",")]

    folder = make_photos(args.images, args.long_side)
    files = files_of(folder, args.images)
    width, height = PILImage.open(files[0]).size
    extractor = load_extractor(load_settings().model_cache)
    inputs = np.stack([load_image(p.read_bytes(), MAX_PIXELS)[0] for p in files])
    for batch in {*batches, 1}:  # warm-up: traces, oneDNN primitive caches
        extractor(inputs[:batch])

    kinds = ["sqlite"] + (["mariadb"] if args.mariadb else [])
    results: dict[tuple[str, str, int], list[float]] = {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-features-") as work:
        for _ in range(args.rounds):
            for batch in batches:
                results.setdefault(("extractor alone", "", batch), []).append(
                    extractor_alone(extractor, inputs, batch))
                for kind in kinds:
                    with FreshDatabase(kind, args.mariadb, Path(work)) as url:
                        # The job walks the whole folder; --limit keeps it to the first
                        # N files in walk order, the N files of the other measurements.
                        results.setdefault(("end to end", kind, batch), []).append(
                            end_to_end(extractor, folder, url, batch, args.images,
                                       args.threads))
            for kind in kinds:
                with FreshDatabase(kind, args.mariadb, Path(work)) as url:
                    results.setdefault(("one at a time", kind, 1), []).append(
                        one_at_a_time(extractor, files, folder, url))

    print(f"{args.images} photos of about {width}x{height} px, "
          f"{sum(p.stat().st_size for p in files) / len(files) / 1e6:.2f} MB each; "
          f"{args.rounds} rounds; cpu cores {os.cpu_count()}; "
          f"1-min load average before/after {load_before:.2f}/{os.getloadavg()[0]:.2f}")
    print(f"{'':26} {'batch':>5} {'img/s best':>10} {'median':>7} "
          f"{'vs extractor alone':>18} {'vs one at a time':>16}")
    for (name, kind, batch), rates in results.items():
        best, median = max(rates), statistics.median(rates)
        alone = results.get(("extractor alone", "", batch))
        versus_alone = f"{best / max(alone):.0%}" if alone else ""
        base = results.get(("one at a time", kind, 1))
        versus_base = f"{best / max(base):.2f}x" if base and name == "end to end" else ""
        label = f"{name}, {kind}" if kind else name
        print(f"{label:26} {batch:5d} {best:10.2f} {median:7.2f} {versus_alone:>18} "
              f"{versus_base:>16}")


if __name__ == "__main__":
    main()
