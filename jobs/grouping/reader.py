"""What the grouping job reads: flags, vectors, and the stored lists' ends and tails.

One interface over the database (db/features.py, db/images.py and db/neighbours.py hold
the SQL, with SQLite's and MariaDB's differences) and the local copy of the vectors
(jobs/grouping/vector_cache.py, used on MariaDB only). The mapper gets everything it needs
from here, block by block, and never sees a connection.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine

import db.features
import db.images
from db.images import Changed
from db.jobs import vector_cache_left
from db.models import SPACE_IDS
import db.neighbours
from db.spaces import ResumeState, resume_state
from jobs.grouping.mapper import Block, Entering
from jobs.grouping.vector_cache import VectorCache
from numerics.vectors import DIMENSIONS

log = logging.getLogger(__name__)


class Reader:
    """The reads of one grouping run on one database."""

    def __init__(self, engine: Engine, vector_cache: Path | None, database_url: str):
        self.engine = engine
        # Not on SQLite: there the vectors are read from a local file already, about as
        # fast as from the copy (bench/results/grouping.md, Run H), which would only
        # double the disk space they take.
        self.cache = (VectorCache(vector_cache, database_url)
                      if vector_cache and engine.dialect.name != "sqlite" else None)

    def changed(self) -> list[Changed]:
        """Return the images flagged needs_grouping."""
        return db.images.load_changed(self.engine)

    def resume_state(self, space: str) -> ResumeState | None:
        """Return where the lists of `space` stand (jobs/grouping/plan.py)."""
        return resume_state(self.engine, space)

    def ok_ids(self, excluded=()) -> np.ndarray:
        """Return the ids of the 'ok' images with features, less those excluded."""
        ids = db.features.load_ok_ids(self.engine)
        return ids[~np.isin(ids, excluded)] if len(excluded) else ids

    def vectors(self, changed: list[Changed], job_id: int, full: bool,
                excluded=()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (ids, vectors) of every 'ok' image not excluded and the ids among them
        whose vectors were read from the database: all of them, unless the local copy is
        current.

        Read after the flags: an image that changes while the vectors load keeps its
        flag for the next run instead of having it cleared unseen. An excluded image's
        vector is not read: one included again is flagged, so it comes from the
        database then."""
        token = vector_cache_left(self.engine, before=job_id)
        # A full run reads everything from the database: it is also the way to start
        # afresh.
        if self.cache is None or full or not self.cache.open(token):
            ids, vectors = db.features.load_vectors(self.engine, skip=excluded)
            return ids, vectors, ids
        ok_ids = self.ok_ids(excluded)
        unflagged = ok_ids[~np.isin(ok_ids, [c.id for c in changed])]
        segment_of, row_of = self.cache.locate(unflagged)
        held = segment_of >= 0
        fetched_ids, fetched_vectors = db.features.load_vectors(
            self.engine, np.setdiff1d(ok_ids, unflagged[held]))
        # An image that changed since `changed` was read keeps its flag for the next run.
        ids = np.union1d(unflagged[held], fetched_ids)
        vectors = np.empty((len(ids), DIMENSIONS), dtype=np.float32)
        self.cache.read_into(segment_of[held], row_of[held], vectors,
                             np.searchsorted(ids, unflagged[held]))
        vectors[np.searchsorted(ids, fetched_ids)] = fetched_vectors
        return ids, vectors, fetched_ids

    def keep_vectors(self, ids, vectors, fetched_ids) -> str | None:
        """Leave the vectors of a completed run for the next; return the copy's token."""
        if self.cache is None:
            return None
        try:
            return self.cache.save(ids, vectors, fetched_ids)
        except OSError as error:  # the lists are written; the next run reads the database
            log.warning("could not save the vector cache in %s: %s", self.cache.folder,
                        error)
            return None

    def lists_containing(self, space: str, neighbour_ids) -> set[int]:
        return db.neighbours.lists_containing(self.engine, SPACE_IDS[space], neighbour_ids)

    def list_ends(self, space: str, image_ids):
        """Return (length, last distance, last neighbour id) of each stored list."""
        return db.neighbours.load_list_ends(self.engine, SPACE_IDS[space], image_ids)

    def whole_lists(self, space: str, image_ids, lengths):
        """Return (neighbour ids, distances) of these stored lists whole, padded."""
        return db.neighbours.load_tails(self.engine, SPACE_IDS[space], image_ids, lengths)

    def block(self, space: str, ids: np.ndarray, full_ids: np.ndarray,
              entering: Entering) -> Block:
        """Return what the mapper needs to compute the lists of `ids` (ascending): which
        are recomputed whole, and the entries entering the others with those lists'
        tails."""
        whole = np.isin(ids, full_ids)
        merges = entering.of(ids[~whole]) if (~whole).any() else Entering.empty()
        tails = (np.empty((0, 0), dtype=np.int64), np.empty((0, 0)))
        if len(merges.owners):
            tails = db.neighbours.load_tails(self.engine, SPACE_IDS[space], merges.lists(),
                                     merges.tail_sizes())
        return Block(ids[whole], merges, *tails)
