"""The vectors the service searches uploads against: one memory-mapped file per space.

The set is that of the last completed grouping run (the jobs table says which): the
'ok' images' stored vectors, for the whitened space their projection by the stored
projection, and for the augmented space those augmented with the nearest the grouping
job stored (augmentation_neighbours; an image it did not group, an excluded one, keeps
its whitened vector), exactly as the grouping job computes them. The first search after
a start or after a newer completed run writes the files (or finds them written by another
worker) in SEARCH_CACHE/<database>/run-<job id>/ (raw little-endian float32, ids in .npy):
built in a temporary folder and renamed into place, so a worker sees a whole set or none.
A new set copies from the previous one the vectors of images unchanged since
(images.updated_at, kept beside the ids: every write of a vector sets it) and reads only
the others from the database; reading them all took 199 s at a million images
(bench/results/million.md). Every worker maps the same files read-only, so the vectors
sit once in the page cache however many workers there are; what each worker holds of its
own is the ids, norms and sort order of ExactIndex, about 36 bytes per image per space.
Nothing is written to the database.
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
from db.features import vector_versions, vectors_with_versions
from db.models import AUGMENTED, POOL3, WHITENED, Job
from db.spaces import augmented_settings, stored_whitening
from numerics.augmentation import augment
from numerics.engine import ExactIndex
from numerics.vectors import DIMENSIONS

log = logging.getLogger(__name__)

IDS_FILE = "ids.npy"
UPDATED_AT_FILE = "updated_at.npy"  # when each image last changed: unchanged ones are copied
META_FILE = "meta.json"
PROJECT_ROWS = 8192  # rows projected at a time into the whitened file


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


def _joined(first: np.ndarray | None, second: np.ndarray) -> np.ndarray:
    """Return the rows of `first` then those of `second`, copying only when both have
    some (`first` may be a slice of a memory-mapped file: written as it is)."""
    if first is None or not len(second):
        return second if first is None else first
    return np.concatenate([first, second]) if len(first) else second


@dataclass
class _Previous:
    """The files of an earlier run, whose unchanged vectors a new set copies."""

    ids: np.ndarray
    updated_at: np.ndarray  # when each image last changed (images.updated_at)
    files: dict[str, np.ndarray]  # by space, memory-mapped

    @property
    def spaces(self):
        return self.files.keys()

    def rows(self, ids: np.ndarray, updated_at: np.ndarray) -> np.ndarray:
        """Return the row of each (id, vector) in these files, −1 where it is not."""
        at = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        same = (self.ids[at] == ids) & (self.updated_at[at] == updated_at)
        return np.where(same, at, -1)

    def vectors(self, space: str, rows: np.ndarray) -> np.ndarray:
        if len(rows) and rows[-1] - rows[0] == len(rows) - 1:  # a run of rows: a slice
            return self.files[space][rows[0]:rows[-1] + 1]
        return self.files[space][rows]


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
        projection, _ = stored_whitening(self.engine)
        previous = self._previous(projection)
        with self.engine.connect() as connection:
            ids, updated_at = vector_versions(connection)
            written_ids, written_at = [], []
            outputs = {POOL3: open(folder / f"{POOL3}.f32", "wb")}
            if projection is not None:
                outputs[WHITENED] = open(folder / f"{WHITENED}.f32", "wb")
            try:
                # A part at a time, straight to the files: the building worker never
                # holds all vectors in memory.
                for start in range(0, len(ids), PROJECT_ROWS):
                    part = slice(start, start + PROJECT_ROWS)
                    old = (previous.rows(ids[part], updated_at[part]) if previous
                           else np.full(len(ids[part]), -1))
                    kept = old >= 0
                    # Those not in the previous files, or with another vector since,
                    # from the database (gone meanwhile: left out; changed: as now).
                    new_ids, new_at, new_vectors = vectors_with_versions(
                        connection, ids[part][~kept])
                    # The copied rows, then the read ones, put in id order.
                    part_ids = np.concatenate([ids[part][kept], new_ids])
                    order = np.argsort(part_ids, kind="stable")
                    copied = previous.vectors(POOL3, old[kept]) if previous else None
                    spaces = {POOL3: _joined(copied, new_vectors)}
                    if projection is not None:
                        spaces[WHITENED] = (
                            _joined(previous.vectors(WHITENED, old[kept]),
                                    projection.apply(new_vectors))
                            if previous and WHITENED in previous.spaces
                            else projection.apply(spaces[POOL3]))
                    for space, vectors in spaces.items():
                        if len(new_ids) and kept.any():
                            vectors = vectors[order]
                        outputs[space].write(np.ascontiguousarray(vectors, dtype="<f4"))
                    written_ids.append(part_ids[order])
                    written_at.append(np.concatenate([updated_at[part][kept], new_at])[order])
            finally:
                for output in outputs.values():
                    output.close()
        ids = np.concatenate(written_ids) if written_ids else np.empty(0, dtype=np.int64)
        np.save(folder / IDS_FILE, ids, allow_pickle=False)
        np.save(folder / UPDATED_AT_FILE, np.concatenate(written_at) if written_at
                else np.empty(0, dtype="datetime64[us]"), allow_pickle=False)
        meta = {"images": len(ids), "spaces": {POOL3: DIMENSIONS}}
        if projection is not None and len(ids):
            meta["spaces"][WHITENED] = projection.dimensions
            meta["whitened"] = projection.token
            self._write_augmented(folder, ids, meta)
        else:
            (folder / f"{WHITENED}.f32").unlink(missing_ok=True)
        return meta

    def _previous(self, projection) -> "_Previous | None":
        """Return the newest complete set of files, to copy the unchanged vectors from."""
        runs = sorted((int(path.name.removeprefix("run-")), path)
                      for path in self.folder.glob("run-*")
                      if path.name.removeprefix("run-").isdigit()
                      and (path / META_FILE).exists() and (path / UPDATED_AT_FILE).exists())
        if not runs:
            return None
        run = runs[-1][1]
        try:
            meta = json.loads((run / META_FILE).read_text())
            ids = np.load(run / IDS_FILE, allow_pickle=False)
            updated_at = np.load(run / UPDATED_AT_FILE, allow_pickle=False)
            spaces = {POOL3: DIMENSIONS}
            # Its whitened vectors only if made by the projection in use now.
            if projection is not None and meta.get("whitened") == projection.token:
                spaces[WHITENED] = projection.dimensions
            if not len(ids) or updated_at.shape != ids.shape:
                return None
            files = {space: np.memmap(run / f"{space}.f32", dtype="<f4", mode="r",
                                      shape=(len(ids), dimensions))
                     for space, dimensions in spaces.items()}
        except (OSError, ValueError) as error:  # removed meanwhile, or damaged
            log.warning("search files %s not reused: %s", run, error)
            return None
        return _Previous(ids, updated_at, files)

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
