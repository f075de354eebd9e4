"""The queries of the grouping job: vectors in, neighbour lists out."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import bindparam, delete, func, select, text, tuple_, update
from sqlalchemy.engine import Connection, Engine

from db.models import OK, Image, ImageFeatures, ImageNeighbour, Job
from db.vectors import DIMENSIONS, decode_vectors

_IN_CHUNK = 1000      # ids per IN (...) list


@dataclass(frozen=True)
class Changed:
    """An image flagged needs_grouping, as it was when the run read it."""

    id: int
    status: str
    updated_at: datetime


def _chunks(values, size=_IN_CHUNK):
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start:start + size]


def load_vectors(engine: Engine, batch_rows: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Return (ids, vectors) of every image with status 'ok', ordered by id."""
    page = (select(Image.id, ImageFeatures.vector)
            .join(ImageFeatures, ImageFeatures.image_id == Image.id)
            .where(Image.status == OK).order_by(Image.id).limit(batch_rows))
    with engine.connect() as connection:
        expected = connection.execute(
            select(func.count()).select_from(Image)
            .join(ImageFeatures, ImageFeatures.image_id == Image.id)
            .where(Image.status == OK)).scalar_one()
        # Filled in place: the vectors are the job's largest allocation (8 KiB an image),
        # so they are never held twice. More rows than counted (a feature run commits
        # meanwhile) grow the arrays.
        ids = np.empty(expected, dtype=np.int64)
        vectors = np.empty((expected, DIMENSIONS), dtype=np.float32)
        filled = last = 0
        # Keyset pages, not stream_results: mysql-connector's dialect has no server-side
        # cursors, so a streamed result would be buffered whole in the client.
        while True:
            rows = connection.execute(page.where(Image.id > last)).all()
            end = filled + len(rows)
            if end > len(ids):
                ids = np.resize(ids, max(end, len(ids) * 2))
                vectors = np.resize(vectors, (len(ids), DIMENSIONS))
            ids[filled:end] = [row[0] for row in rows]
            vectors[filled:end] = decode_vectors([row[1] for row in rows])
            filled = end
            if len(rows) < batch_rows:
                break
            last = rows[-1][0]
    return ids[:filled], vectors[:filled]


def load_ok_ids(engine: Engine) -> np.ndarray:
    """Return the ids of the images with status 'ok' and stored features, ascending."""
    with engine.connect() as connection:
        ids = connection.execute(select(Image.id)
                                 .join(ImageFeatures, ImageFeatures.image_id == Image.id)
                                 .where(Image.status == OK).order_by(Image.id)).scalars()
        return np.fromiter(ids, dtype=np.int64)


def load_changed(engine: Engine) -> list[Changed]:
    """Return the images flagged needs_grouping."""
    with engine.connect() as connection:
        rows = connection.execute(select(Image.id, Image.status, Image.updated_at)
                                  .where(Image.needs_grouping.is_(True))
                                  .order_by(Image.id))
        return [Changed(*row) for row in rows]


def lists_containing(engine: Engine, neighbour_ids) -> set[int]:
    """Return the ids of the images whose lists hold any of neighbour_ids."""
    found: set[int] = set()
    query = (select(ImageNeighbour.image_id).distinct()
             .where(ImageNeighbour.neighbour_id.in_(bindparam("ids", expanding=True))))
    with engine.connect() as connection:
        for chunk in _chunks(int(i) for i in neighbour_ids):
            found.update(connection.execute(query, {"ids": chunk}).scalars())
    return found


def load_entries(engine: Engine, image_ids, rank: int) -> dict[int, tuple[float, int]]:
    """Return {image id: (distance, neighbour id)} of the entries at `rank`."""
    query = (select(ImageNeighbour.image_id, ImageNeighbour.distance,
                    ImageNeighbour.neighbour_id)
             .where(ImageNeighbour.image_id.in_(bindparam("ids", expanding=True)),
                    ImageNeighbour.rank == rank))
    entries = {}
    with engine.connect() as connection:
        for chunk in _chunks(image_ids):
            for image_id, distance, neighbour_id in connection.execute(query,
                                                                      {"ids": chunk}):
                entries[image_id] = (distance, neighbour_id)
    return entries


def load_lists(engine: Engine, image_ids) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Return {image id: (neighbour ids, distances)} in rank order; empty for no list."""
    lists = {int(i): (np.empty(0, dtype=np.int64), np.empty(0)) for i in image_ids}
    query = (select(ImageNeighbour.image_id, ImageNeighbour.neighbour_id,
                    ImageNeighbour.distance)
             .where(ImageNeighbour.image_id.in_(bindparam("ids", expanding=True)))
             .order_by(ImageNeighbour.image_id, ImageNeighbour.rank))
    with engine.connect() as connection:
        for chunk in _chunks(lists):
            # All rows of a chunk at once, into arrays: a loop over rows in Python was
            # most of an incremental run's reading time.
            rows = connection.execute(query, {"ids": chunk}).all()
            if not rows:
                continue
            owners, neighbours, distances = zip(*rows)
            owners = np.array(owners, dtype=np.int64)
            starts = np.flatnonzero(np.diff(owners)) + 1
            for image_id, ids, values in zip(
                    owners[np.r_[0, starts]].tolist(),
                    np.split(np.array(neighbours, dtype=np.int64), starts),
                    np.split(np.array(distances, dtype=np.float64), starts)):
                lists[image_id] = (ids, values)
    return lists


# MariaDB: the rows travel as one JSON parameter and JSON_TABLE (MariaDB 10.6+) unpacks
# them on the server. The pure-Python driver otherwise escapes every value on its own,
# which made writing the lists several times slower than computing them. JSON numbers
# round-trip doubles exactly (shortest repr out, correctly rounded parse in).
_INSERT_JSON = text(
    "INSERT INTO image_neighbours (image_id, `rank`, neighbour_id, distance) "
    "SELECT j.image_id, j.neighbour_rank, j.neighbour_id, j.distance "
    "FROM JSON_TABLE(:rows, '$[*]' COLUMNS ("
    "image_id BIGINT PATH '$[0]', neighbour_rank INT PATH '$[1]', "
    "neighbour_id BIGINT PATH '$[2]', distance DOUBLE PATH '$[3]')) AS j")
# SQLite: the driver's executemany steps one prepared statement in C.
_INSERT_SQLITE = ('INSERT INTO image_neighbours (image_id, "rank", neighbour_id, distance) '
                  "VALUES (?, ?, ?, ?)")
_JSON_ROWS = 20000  # rows per JSON_TABLE statement (about 1 MB of JSON)


def write_lists(engine: Engine, image_ids: np.ndarray, neighbour_ids: np.ndarray,
                distances: np.ndarray, job_id: int | None = None,
                progress: dict | None = None, first_ranks: np.ndarray | None = None) -> int:
    """Replace the lists of image_ids in one transaction; return the rows written.

    Row i of neighbour_ids/distances is image_ids[i]'s list in rank order, padded with
    −1. Where first_ranks is given, only ranks from first_ranks[i] on are replaced: the
    caller knows the stored ranks before it are the same. Readers see each list whole,
    old or new. The job's progress counts are updated in the same transaction, so they
    never claim more than was written.
    """
    image_ids = np.asarray(image_ids, dtype=np.int64)
    first_ranks = (np.ones(len(image_ids), dtype=np.int64) if first_ranks is None
                   else np.asarray(first_ranks, dtype=np.int64))
    rank = np.broadcast_to(np.arange(1, neighbour_ids.shape[1] + 1), neighbour_ids.shape)
    valid = (neighbour_ids >= 0) & (rank >= first_ranks[:, None])
    owner = np.broadcast_to(image_ids[:, None], neighbour_ids.shape)
    # Plain Python numbers: the drivers do not take numpy scalars.
    rows = list(zip(owner[valid].tolist(), rank[valid].tolist(),
                    neighbour_ids[valid].tolist(), distances[valid].tolist()))
    table = ImageNeighbour.__table__
    with engine.begin() as connection:
        # One statement per first rank (at most k) and thousand lists, not one per list.
        for first in np.unique(first_ranks).tolist():
            for chunk in _chunks(image_ids[first_ranks == first].tolist()):
                connection.execute(delete(table).where(table.c.image_id.in_(chunk),
                                                       table.c.rank >= first))
        if connection.dialect.name == "sqlite":
            if rows:
                connection.exec_driver_sql(_INSERT_SQLITE, rows)
        else:
            for start in range(0, len(rows), _JSON_ROWS):
                connection.execute(_INSERT_JSON,
                                   {"rows": json.dumps(rows[start:start + _JSON_ROWS])})
        if job_id is not None and progress is not None:
            _set_counts(connection, job_id, progress)
    return len(rows)


def delete_lists_of_unavailable(engine: Engine) -> int:
    """Delete the lists of images whose status is not 'ok'; return the lists deleted."""
    gone = select(Image.id).where(Image.status != OK)
    table = ImageNeighbour.__table__
    with engine.begin() as connection:
        owners = connection.execute(select(table.c.image_id).distinct()
                                    .where(table.c.image_id.in_(gone))).scalars().all()
        for chunk in _chunks(owners):
            connection.execute(delete(table).where(table.c.image_id.in_(chunk)))
    return len(owners)


def clear_needs_grouping(engine: Engine, changed: list[Changed]) -> int:
    """Clear needs_grouping of images not changed since read; return how many."""
    # An image changed again meanwhile (a concurrent feature run) has a new updated_at
    # or status and keeps its flag for the next run. updated_at is set to itself so that
    # clearing the flag does not count as a change of the image. One statement per
    # thousand images: the id list lets the server use the primary key.
    cleared = 0
    for chunk in _chunks(changed):
        statement = (update(Image)
                     .where(Image.id.in_([c.id for c in chunk]),
                            tuple_(Image.id, Image.updated_at, Image.status).in_(
                                [(c.id, c.updated_at, c.status) for c in chunk]),
                            Image.needs_grouping.is_(True))
                     .values(needs_grouping=False, updated_at=Image.updated_at))
        with engine.begin() as connection:
            cleared += connection.execute(statement).rowcount
    return cleared


def recent_grouping_jobs(engine: Engine, limit: int = 20) -> list[tuple[str, dict | None]]:
    """Return (outcome, counts) of the latest grouping runs, newest first."""
    with engine.connect() as connection:
        rows = connection.execute(select(Job.outcome, Job.counts)
                                  .where(Job.kind == "grouping")
                                  .order_by(Job.id.desc()).limit(limit))
        return [(outcome, json.loads(counts) if counts else None)
                for outcome, counts in rows]


def set_job_counts(engine: Engine, job_id: int, counts: dict) -> None:
    """Store a running job's counts (its progress)."""
    with engine.begin() as connection:
        _set_counts(connection, job_id, counts)


def _set_counts(connection: Connection, job_id: int, counts: dict) -> None:
    connection.execute(update(Job).where(Job.id == job_id)
                       .values(counts=json.dumps(counts, sort_keys=True)))

