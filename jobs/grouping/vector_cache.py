"""A local copy of the vectors that the last completed grouping run used.

An incremental run needs every 'ok' image's vector, but only the images flagged
needs_grouping can have new ones since the last completed run (jobs/grouping/plan.py): it
reads those from the database and the others from this copy. Reading all vectors from
the database costs more than the rest of a small incremental run (on MariaDB the 8 KiB
vectors sit in overflow pages, several seconds per 50,000).

The copy is trusted only if the previous grouping run on the database completed and
recorded this copy's token (jobs.vector_cache). A failed or killed run (a full run
clears the flags as it starts), a run from another machine, or a copy of another
database: none of them leaves a matching token, and the job reads every vector from the
database.
The copy is a few segments of (ids, vectors) .npy files, a later segment's row winning
over an earlier one's, and a manifest naming them with the token. A completed run adds
the vectors it read from the database as a segment, or writes them all as one segment
when the copy has grown. Files are synced before the manifest names them, so a crash
leaves the old copy or the new one.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy.engine import make_url

from numerics.vectors import DIMENSIONS

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MAX_SEGMENTS = 8
# A new segment holds at most this share of the copy's rows; more, and one is rewritten.
MAX_SEGMENT_SHARE = 0.25
READ_ROWS = 4096  # rows per read from a segment (32 MiB)


class VectorCache:
    """The copy kept for one database, in a folder of its own under `root`."""

    def __init__(self, root: Path, database_url: str):
        # The URL without its password names the database; the token, not the name,
        # decides whether the copy is current.
        name = make_url(database_url).render_as_string(hide_password=True)
        self.folder = Path(root) / hashlib.sha256(name.encode()).hexdigest()[:16]
        self.segments: list[tuple[str, np.ndarray, np.ndarray]] = []  # oldest first
        self.token: str | None = None  # of the copy opened

    def open(self, token: str | None) -> bool:
        """Open the copy if its token is `token`; return whether it is usable."""
        self.segments, self.token = [], None
        if not token:
            return False
        try:
            manifest = json.loads((self.folder / MANIFEST).read_text())
            if manifest.get("token") != token:
                return False
            for name in manifest["segments"]:
                ids = np.load(self.folder / f"{name}-ids.npy")
                vectors = np.load(self.folder / f"{name}-vectors.npy", mmap_mode="r")
                if (ids.dtype != np.int64 or ids.ndim != 1 or vectors.dtype != np.float32
                        or vectors.shape != (len(ids), DIMENSIONS)
                        or np.any(ids[1:] <= ids[:-1])):
                    raise ValueError(f"segment {name} is not as written")
                self.segments.append((name, ids, vectors))
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("vector cache in %s not used: %s", self.folder, error)
            self.segments = []
            return False
        self.token = token
        return True

    def locate(self, image_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the segment (−1: not held) and row of each id, the latest segment
        winning."""
        segment_of = np.full(len(image_ids), -1)
        row_of = np.zeros(len(image_ids), dtype=np.int64)
        for number, (_, ids, _) in enumerate(self.segments):
            if not len(ids):
                continue
            at = np.minimum(np.searchsorted(ids, image_ids), len(ids) - 1)
            hit = ids[at] == image_ids
            segment_of[hit], row_of[hit] = number, at[hit]
        return segment_of, row_of

    def read_into(self, segment_of: np.ndarray, row_of: np.ndarray, out: np.ndarray,
                  rows: np.ndarray) -> None:
        """Copy the vectors at these places (from locate, all held, ids ascending) into
        out[rows]."""
        buffer = np.empty((READ_ROWS, DIMENSIONS), dtype=np.float32)
        for number, (name, ids, vectors) in enumerate(self.segments):
            take = np.flatnonzero(segment_of == number)
            wanted = row_of[take]  # ascending, as the ids are
            # Read in file order, a chunk at a time: the rows wanted are most of a large
            # segment, and page faults on the memory map cost several times more.
            with open(self.folder / f"{name}-vectors.npy", "rb") as file:
                for start in range(0, len(ids), READ_ROWS):
                    first, last = np.searchsorted(wanted, [start, start + READ_ROWS])
                    if first == last:
                        continue
                    count = min(READ_ROWS, len(ids) - start)
                    file.seek(vectors.offset + start * vectors.strides[0])
                    if file.readinto(buffer[:count]) != buffer[:count].nbytes:
                        raise OSError(f"segment {name} is shorter than its header says")
                    out[rows[take[first:last]]] = buffer[wanted[first:last] - start]

    def save(self, ids: np.ndarray, vectors: np.ndarray, fetched_ids: np.ndarray) -> str:
        """Make the copy hold `vectors` of `ids` (ascending), of which only fetched_ids
        may differ from the copy opened; return its new token."""
        if self.token and not len(fetched_ids):
            return self.token  # nothing new: the copy stays as it is
        self.folder.mkdir(parents=True, exist_ok=True)
        rows = sum(len(segment[1]) for segment in self.segments)
        if (self.segments and len(self.segments) < MAX_SEGMENTS
                and len(fetched_ids) <= MAX_SEGMENT_SHARE * rows):
            names = [segment[0] for segment in self.segments]
            new_ids = fetched_ids
            new_vectors = vectors[np.searchsorted(ids, fetched_ids)]
        else:
            names, new_ids, new_vectors = [], ids, vectors
        name = uuid.uuid4().hex
        self._write(f"{name}-ids.npy", lambda file: np.save(file, new_ids))
        self._write(f"{name}-vectors.npy", lambda file: np.save(file, new_vectors))
        token = uuid.uuid4().hex
        names.append(name)
        self._write(MANIFEST, lambda file: file.write(
            json.dumps({"token": token, "segments": names}).encode()))
        self._sync_folder()
        keep = {MANIFEST, *(f"{n}-{part}.npy" for n in names for part in ("ids", "vectors"))}
        for path in self.folder.iterdir():
            if path.name not in keep:
                path.unlink(missing_ok=True)
        return token

    def _write(self, name: str, write) -> None:
        # A temporary file, synced, then renamed: never a half-written file by its name.
        handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=".writing-")
        try:
            with os.fdopen(handle, "wb") as file:
                write(file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.folder / name)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def _sync_folder(self) -> None:
        handle = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
