"""The vectors the service searches uploads against: one memory-mapped file per space.

The set is that of the last completed grouping run (the jobs table says which): the
'ok' images' stored vectors, for the whitened space their projection by the stored
projection, and for the augmented space those augmented with the nearest the grouping
job stored (augmentation_neighbours; an image it did not group, an excluded one, keeps
its whitened vector), exactly as the grouping job computes them. The first search after
a start or after a newer completed run writes the files (or finds them written by another
worker) in SEARCH_CACHE/<database>/run-<job id>/ (raw little-endian float32, ids in .npy): built in a temporary folder and renamed into
place, so a worker sees a whole set or none. Every worker maps the same files
read-only, so the vectors sit once in the page cache however many workers there are;
what each worker holds of its own is the ids, norms and sort order of ExactIndex, about
36 bytes per image per space. Nothing is written to the database.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine, make_url

import db.augmentation
from db.features import vector_pages
from db.models import AUGMENTED, POOL3, WHITENED, Job
from db.spaces import augmented_settings, stored_whitening
from numerics.augmentation import augment
from numerics.engine import ExactIndex
from numerics.vectors import DIMENSIONS

log = logging.getLogger(__name__)

IDS_FILE = "ids.npy"
META_FILE = "meta.json"
PROJECT_ROWS = 8192  # rows projected at a time into the whitened file
VECTOR_BYTES = DIMENSIONS * 4


class NothingToSearch(Exception):
    """No completed grouping run yet: there is no set of vectors to search."""


@dataclass
class Loaded:
    """The indexes of one grouping run's vectors, by space."""

    job_id: int
    indexes: dict[str, ExactIndex]
    projection: object | None  # whitening.Projection of the whitened space, if any
    augmentation: tuple[int, float] | None = None  # (k, α) of the augmented space, if any

    def augmented_query(self, whitened: np.ndarray) -> np.ndarray:
        """Return the augmented vector of one whitened query vector: the query with its
        k nearest in the whitened space, as every stored image with its own."""
        k, alpha = self.augmentation
        index = self.indexes[WHITENED]
        found, _ = index.search(whitened, [0], k)  # id 0 is no image's: none left out
        rows = np.searchsorted(index.ids, found[0][found[0] >= 0])
        vectors = np.concatenate([whitened, index.vectors[rows]])
        return augment(vectors, np.arange(1, len(vectors))[np.newaxis], alpha, rows=[0])


def last_completed_grouping(connection) -> int | None:
    """Return the id of the newest completed grouping run, or None."""
    query = (select(Job.id).where(Job.kind == "grouping", Job.outcome == "completed")
             .order_by(Job.id.desc()).limit(1))
    return connection.execute(query).scalar()


@contextmanager
def _file_lock(path: Path):
    """Hold an exclusive lock on `path` (made if missing) across processes."""
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class VectorStore:
    """One database's search files under `root`, loaded once per process and job."""

    def __init__(self, root: Path, database_url: str, engine: Engine,
                 threads: int | None = None):
        # The URL without its password names the database (as the grouping job's copy).
        name = make_url(database_url).render_as_string(hide_password=True)
        self.folder = Path(root) / hashlib.sha256(name.encode()).hexdigest()[:16]
        self.engine = engine
        self.threads = threads
        self._loaded: Loaded | None = None  # see `loaded`
        self._lock = threading.Lock()  # one load per process; searches wait for it

    @property
    def loaded(self) -> Loaded | None:
        """The indexes this process holds now, if any."""
        return self._loaded

    def current(self, connection) -> Loaded:
        """Return the indexes of the newest completed grouping run, loading them once."""
        job_id = last_completed_grouping(connection)
        if job_id is None:
            raise NothingToSearch("the grouping job has not completed a run yet")
        loaded = self._loaded
        if loaded is not None and loaded.job_id == job_id:
            return loaded
        with self._lock:
            if self._loaded is None or self._loaded.job_id != job_id:
                self._loaded = self._load(job_id)
            return self._loaded

    def _load(self, job_id: int) -> Loaded:
        run = self.folder / f"run-{job_id}"
        for attempt in (1, 2):
            if not (run / META_FILE).exists():
                self._build(job_id, run)
            try:
                loaded = self._open(job_id, run)
                break
            except (OSError, ValueError) as error:
                # Removed by a worker that moved on, or damaged: build it afresh.
                if attempt == 2:
                    raise
                log.warning("search files %s unusable (%s); rebuilding them", run, error)
                shutil.rmtree(run, ignore_errors=True)
        self._remove_older(job_id)
        return loaded

    def _open(self, job_id: int, run: Path) -> Loaded:
        meta = json.loads((run / META_FILE).read_text())
        ids = np.load(run / IDS_FILE, allow_pickle=False)
        indexes = {}
        for space, dimensions in meta["spaces"].items():
            shape = (len(ids), dimensions)
            vectors = (np.memmap(run / f"{space}.f32", dtype="<f4", mode="r", shape=shape)
                       if len(ids) else np.empty(shape, dtype=np.float32))
            indexes[space] = ExactIndex(vectors, ids, threads=self.threads)
        projection = None
        if WHITENED in indexes:
            projection, _ = stored_whitening(self.engine)
            if projection is None or projection.token != meta.get("whitened"):
                # Relearned since the files were written: the next completed run's
                # files will have it; until then the whitened space is not searched.
                indexes.pop(WHITENED)
                indexes.pop(AUGMENTED, None)
                projection = None
        log.info("search vectors of grouping run %d: %d images, spaces %s", job_id,
                 len(ids), ", ".join(indexes))
        augmentation = meta.get("augmented") if AUGMENTED in indexes else None
        return Loaded(job_id, indexes, projection,
                      augmentation and (augmentation["k"], augmentation["alpha"]))

    def _build(self, job_id: int, run: Path) -> None:
        """Write the run's files, unless another worker does or did."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.folder / "build.lock"):
            if (run / META_FILE).exists():  # another worker built them meanwhile
                return
            temp = Path(tempfile.mkdtemp(dir=self.folder, prefix=".tmp-"))
            try:
                meta = self._write(temp)
                meta["job_id"] = job_id
                (temp / META_FILE).write_text(json.dumps(meta))
                for path in temp.iterdir():
                    os.chmod(path, 0o644)
                os.chmod(temp, 0o755)
                os.rename(temp, run)
            except BaseException:
                shutil.rmtree(temp, ignore_errors=True)
                raise
        log.info("wrote the search vectors of grouping run %d to %s", job_id, run)

    def _write(self, folder: Path) -> dict:
        """Write ids and each space's vectors into `folder`; return their description."""
        ids = []
        # Page by page straight to the file, as stored (little-endian float32): the
        # building worker never holds all vectors in memory.
        with open(folder / f"{POOL3}.f32", "wb") as out, self.engine.connect() as connection:
            for rows in vector_pages(connection):
                for image_id, data in rows:
                    if len(data) != VECTOR_BYTES:
                        raise ValueError(f"image {image_id}: stored vector has "
                                         f"{len(data)} bytes, not {VECTOR_BYTES}")
                    out.write(data)
                    ids.append(image_id)
        ids = np.array(ids, dtype=np.int64)
        np.save(folder / IDS_FILE, ids, allow_pickle=False)
        meta = {"images": len(ids), "spaces": {POOL3: DIMENSIONS}}
        projection, _ = stored_whitening(self.engine)
        if projection is not None and len(ids):
            vectors = np.memmap(folder / f"{POOL3}.f32", dtype="<f4", mode="r",
                                shape=(len(ids), DIMENSIONS))
            with open(folder / f"{WHITENED}.f32", "wb") as out:
                for start in range(0, len(ids), PROJECT_ROWS):
                    out.write(projection.apply(vectors[start:start + PROJECT_ROWS])
                              .astype("<f4").tobytes())
            del vectors
            meta["spaces"][WHITENED] = projection.dimensions
            meta["whitened"] = projection.token
            self._write_augmented(folder, ids, meta)
        return meta

    def _write_augmented(self, folder: Path, ids: np.ndarray, meta: dict) -> None:
        """Write the augmented space's vectors, if the grouping job computes it."""
        with self.engine.connect() as connection:
            augmentation = augmented_settings(connection)
            if augmentation is None:
                return
            k, alpha = augmentation
            stored_ids, neighbours = db.augmentation.load(connection, k)
        dimensions = meta["spaces"][WHITENED]
        whitened = np.memmap(folder / f"{WHITENED}.f32", dtype="<f4", mode="r",
                             shape=(len(ids), dimensions))
        rows = np.full((len(ids), k), -1, dtype=np.int64)
        grouped = np.isin(ids, stored_ids)
        found = neighbours[np.searchsorted(stored_ids, ids[grouped])]
        at = np.minimum(np.searchsorted(ids, found), len(ids) - 1)
        # A neighbour no longer among the ids (changed since the run) is left out.
        rows[grouped] = np.where((found >= 0) & (ids[at] == found), at, -1)
        with open(folder / f"{AUGMENTED}.f32", "wb") as out:
            for start in range(0, len(ids), PROJECT_ROWS):
                part = np.arange(start, min(start + PROJECT_ROWS, len(ids)))
                out.write(augment(whitened, rows[part], alpha, part).astype("<f4")
                          .tobytes())
        del whitened
        meta["spaces"][AUGMENTED] = dimensions
        meta["augmented"] = {"k": k, "alpha": alpha}

    def _remove_older(self, job_id: int) -> None:
        """Remove the files of older runs; workers that still map them keep their pages."""
        for path in self.folder.glob("run-*"):
            suffix = path.name.removeprefix("run-")
            if suffix.isdigit() and int(suffix) < job_id:
                shutil.rmtree(path, ignore_errors=True)
