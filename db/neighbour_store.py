"""The queries of the grouping job: vectors in, neighbour lists out."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import orjson
from sqlalchemy import bindparam, delete, func, select, text, tuple_, update
from sqlalchemy.engine import Connection, Engine

from db.models import OK, GroupingExclusion, Image, ImageFeatures, ImageNeighbour, Job, NeighbourList
from db.space_store import set_valid_through
from numerics.list_changes import ListChanges
from numerics.vectors import DIMENSIONS, decode_vector

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


def load_vectors(engine: Engine, image_ids=None, batch_rows: int = 2000,
                 skip=()) -> tuple[np.ndarray, np.ndarray]:
    """Return (ids, vectors) of every image with status 'ok', or of those among
    image_ids (ascending), ordered by id, less those in `skip` (ascending)."""
    skip = np.asarray(skip, dtype=np.int64)
    query = (select(Image.id, ImageFeatures.vector)
             .join(ImageFeatures, ImageFeatures.image_id == Image.id)
             .where(Image.status == OK).order_by(Image.id))
    with engine.connect() as connection:
        if image_ids is None:
            expected = connection.execute(
                select(func.count()).select_from(Image)
                .join(ImageFeatures, ImageFeatures.image_id == Image.id)
                .where(Image.status == OK)).scalar_one()
            pages = vector_pages(connection, batch_rows)
        else:
            expected = len(image_ids)
            pages = (connection.execute(query.where(Image.id.in_(chunk))).all()
                     for chunk in _chunks(int(i) for i in image_ids))
        # Filled in place: the vectors are the job's largest allocation (8 KiB an image),
        # so they are never held twice. More rows than counted (a feature run commits
        # meanwhile) grow the arrays.
        ids = np.empty(expected, dtype=np.int64)
        vectors = np.empty((expected, DIMENSIONS), dtype=np.float32)
        filled = 0
        for rows in pages:
            if len(skip):
                keep = ~np.isin(np.fromiter((row[0] for row in rows), np.int64,
                                            len(rows)), skip)
                rows = [row for row, kept in zip(rows, keep) if kept]
            end = filled + len(rows)
            if end > len(ids):
                ids = np.resize(ids, max(end, len(ids) * 2))
                vectors = np.resize(vectors, (len(ids), DIMENSIONS))
            for row, (image_id, vector) in enumerate(rows, filled):
                ids[row] = image_id
                vectors[row] = decode_vector(vector)  # one copy, into place
            filled = end
    return ids[:filled], vectors[:filled]


def vector_pages(connection: Connection, batch_rows: int = 2000):
    """Yield the (id, vector bytes) of every 'ok' image with features, in pages by id."""
    # Keyset pages, not stream_results: mysql-connector's dialect has no server-side
    # cursors, so a streamed result would be buffered whole.
    page = (select(Image.id, ImageFeatures.vector)
            .join(ImageFeatures, ImageFeatures.image_id == Image.id)
            .where(Image.status == OK).order_by(Image.id).limit(batch_rows))
    last = 0
    while True:
        rows = connection.execute(page.where(Image.id > last)).all()
        yield rows
        if len(rows) < batch_rows:
            return
        last = rows[-1][0]


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


def lists_containing(engine: Engine, space: int, neighbour_ids) -> set[int]:
    """Return the ids of the images whose lists in `space` hold any of neighbour_ids."""
    found: set[int] = set()
    query = (select(ImageNeighbour.image_id).distinct()
             .where(ImageNeighbour.neighbour_id.in_(bindparam("ids", expanding=True)),
                    ImageNeighbour.space == space))
    with engine.connect() as connection:
        for chunk in _chunks(int(i) for i in neighbour_ids):
            found.update(connection.execute(query, {"ids": chunk}).scalars())
    return found


def load_list_ends(engine: Engine, space: int,
                   image_ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (length, last distance, last neighbour id) of each image's stored list in
    `space`, as arrays in the order of image_ids; (0, inf, −1) where there is none."""
    image_ids = np.asarray(image_ids, dtype=np.int64)
    length = np.zeros(len(image_ids), dtype=np.int64)
    last_distance = np.full(len(image_ids), np.inf)
    last_id = np.full(len(image_ids), -1, dtype=np.int64)
    # The whole table in one statement: a merge asks for nearly every list, and one
    # scan of a row per list beats thousands of key look-ups.
    with engine.connect() as connection:
        rows = connection.execute(select(NeighbourList.image_id, NeighbourList.length,
                                         NeighbourList.last_distance,
                                         NeighbourList.last_neighbour_id)
                                  .where(NeighbourList.space == space)).all()
    if not rows or not len(image_ids):
        return length, last_distance, last_id
    owners, lengths, distances, ids = (np.array(column) for column in zip(*rows))
    sort = np.argsort(owners)
    at = np.minimum(np.searchsorted(owners, image_ids, sorter=sort), len(owners) - 1)
    found = owners[sort[at]] == image_ids
    pick = sort[at[found]]
    length[found], last_distance[found], last_id[found] = (lengths[pick], distances[pick],
                                                           ids[pick])
    return length, last_distance, last_id


_TAIL_CHUNK = 250  # lists per statement of load_tails


@functools.cache
def _tails_sql(dialect: str, lists: int) -> str:
    # One SELECT per list, each reading the end of its range of the key backwards, in
    # one statement of plain SQL with placeholders (image id, row count) per list.
    # Through SQLAlchemy's constructs each part became a derived table, which MariaDB
    # materialised: twice the server time, and the compiler's work on every call.
    part = ("SELECT image_id, neighbour_id, distance FROM image_neighbours "
            "WHERE image_id = {0} AND space = {0} "
            "ORDER BY distance DESC, neighbour_id DESC LIMIT {0}")
    # SQLite takes a LIMIT within a compound SELECT only in a subquery.
    part = (f"SELECT * FROM ({part.format('?')})" if dialect == "sqlite"
            else f"({part.format('%s')})")
    return " UNION ALL ".join([part] * lists)


def load_tails(engine: Engine, space: int, image_ids,
               sizes) -> tuple[np.ndarray, np.ndarray]:
    """Return (neighbour ids, distances) of the last sizes[i] entries of each image's
    stored list in `space`, in list order, as arrays of width max(sizes) padded with −1
    and inf."""
    image_ids = np.asarray(image_ids, dtype=np.int64)
    sizes = np.asarray(sizes, dtype=np.int64)
    width = int(sizes.max()) if len(sizes) else 0
    ids = np.full((len(image_ids), width), -1, dtype=np.int64)
    distances = np.full((len(image_ids), width), np.inf)
    order = np.argsort(image_ids)
    with engine.connect() as connection:
        for start in range(0, len(image_ids), _TAIL_CHUNK):
            chunk = image_ids[start:start + _TAIL_CHUNK].tolist()
            chunk_sizes = sizes[start:start + _TAIL_CHUNK].tolist()
            parameters = []
            for n in range(_TAIL_CHUNK):  # the last chunk padded with empty parts
                parameters += ((chunk[n], space, chunk_sizes[n]) if n < len(chunk)
                               else (0, space, 0))
            rows = connection.exec_driver_sql(
                _tails_sql(connection.dialect.name, _TAIL_CHUNK), tuple(parameters)).all()
            if not rows:
                continue
            owners, neighbours, values = (np.array(column) for column in zip(*rows))
            sort = np.lexsort((neighbours, values, owners))
            owners, neighbours, values = owners[sort], neighbours[sort], values[sort]
            first = np.searchsorted(owners, owners)  # each owner's first row
            at = order[np.searchsorted(image_ids, owners, sorter=order)]
            position = np.arange(len(owners)) - first
            ids[at, position], distances[at, position] = neighbours, values
    return ids, distances


# MariaDB: the rows travel as one JSON parameter and JSON_TABLE (MariaDB 10.6+) unpacks
# them on the server. The driver otherwise sends every row as its own statement or
# escapes every value on its own, which made writing the lists several times slower than
# computing them. JSON numbers round-trip doubles exactly (orjson writes the shortest
# repr, the server parses it correctly rounded); orjson encodes a few times faster than
# the json module.
def _json_table(columns: str) -> str:
    return f"JSON_TABLE(:rows, '$[*]' COLUMNS ({columns})) AS j"


_PAIR_COLUMNS = "image_id BIGINT PATH '$[0]', neighbour_id BIGINT PATH '$[1]'"
_ROW_COLUMNS = f"{_PAIR_COLUMNS}, distance DOUBLE PATH '$[2]'"
_END_COLUMNS = ("image_id BIGINT PATH '$[0]', length INT PATH '$[1]', "
                "last_distance DOUBLE PATH '$[2]', last_neighbour_id BIGINT PATH '$[3]'")
_MARIADB = {
    "added": text("INSERT INTO image_neighbours (image_id, space, neighbour_id, distance) "
                  "SELECT j.image_id, :space, j.neighbour_id, j.distance "
                  f"FROM {_json_table(_ROW_COLUMNS)}"),
    "removed": text("DELETE n FROM image_neighbours AS n JOIN "
                    f"{_json_table(_PAIR_COLUMNS)} "
                    "ON n.image_id = j.image_id AND n.space = :space "
                    "AND n.neighbour_id = j.neighbour_id"),
    "ends": text("INSERT INTO neighbour_lists (image_id, space, length, last_distance, "
                 "last_neighbour_id) SELECT j.image_id, :space, j.length, j.last_distance, "
                 f"j.last_neighbour_id FROM {_json_table(_END_COLUMNS)}"),
}
# SQLite: the driver's executemany steps one prepared statement in C; the space is
# the second value of every row.
_SQLITE = {
    "added": "INSERT INTO image_neighbours (image_id, space, neighbour_id, distance) "
             "VALUES (?, ?, ?, ?)",
    "removed": "DELETE FROM image_neighbours WHERE image_id = ? AND space = ? "
               "AND neighbour_id = ?",
    "ends": "INSERT INTO neighbour_lists (image_id, space, length, last_distance, "
            "last_neighbour_id) VALUES (?, ?, ?, ?, ?)",
}
_JSON_ROWS = 20000  # rows per JSON_TABLE statement (about 1 MB of JSON)


def write_lists(engine: Engine, space: int, changes: ListChanges,
                job_id: int | None = None, progress: dict | None = None,
                valid_through: int | None = None) -> int:
    """Apply changes to some lists of `space` in one transaction; return the rows
    inserted.

    Readers see each list whole, old or new. The space's resume point and the job's
    progress counts are updated in the same transaction, so that neither claims more
    than was written.
    """
    touched = sorted(set(changes.replaced) | {end[0] for end in changes.ends})
    with engine.connect() as connection:
        # The ids come from image rows, which are never deleted (a gone file keeps its
        # row, status 'missing'), so the two foreign-key look-ups per inserted row cannot
        # fail; skipping them takes about a third off InnoDB's inserts. Switched outside
        # the transaction: SQLite ignores the pragma within one.
        _check_foreign_keys(connection, False)
        try:
            with connection.begin():
                _apply(connection, space, changes, touched)
                if valid_through is not None:
                    set_valid_through(connection, space, valid_through)
                if job_id is not None and progress is not None:
                    _set_counts(connection, job_id, progress)
        finally:
            _check_foreign_keys(connection, True)
    return len(changes.added)


def _check_foreign_keys(connection: Connection, on: bool) -> None:
    connection.exec_driver_sql(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}"
                               if connection.dialect.name == "sqlite"
                               else f"SET SESSION foreign_key_checks = {int(on)}")
    connection.commit()


def _apply(connection: Connection, space: int, changes: ListChanges,
           touched: list[int]) -> None:
    for chunk in _chunks(changes.replaced):
        connection.execute(delete(ImageNeighbour).where(ImageNeighbour.image_id.in_(chunk),
                                                        ImageNeighbour.space == space))
    for chunk in _chunks(touched):
        connection.execute(delete(NeighbourList).where(NeighbourList.image_id.in_(chunk),
                                                       NeighbourList.space == space))
    for name in ("removed", "added", "ends"):
        rows = getattr(changes, name)
        if not rows:
            continue
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql(_SQLITE[name], [(row[0], space, *row[1:])
                                                       for row in rows])
        else:
            for start in range(0, len(rows), _JSON_ROWS):
                connection.execute(_MARIADB[name], {
                    "space": space,
                    "rows": orjson.dumps(rows[start:start + _JSON_ROWS]).decode()})


def delete_lists_of_unavailable(engine: Engine) -> int:
    """Delete the lists, in every space, of images whose status is not 'ok' or that are
    excluded from the grouping; return the lists deleted."""
    gone = select(Image.id).where(Image.status != OK)
    excluded = select(GroupingExclusion.image_id)
    with engine.begin() as connection:
        owners = connection.execute(select(NeighbourList.image_id).where(
            NeighbourList.image_id.in_(gone) | NeighbourList.image_id.in_(excluded))
        ).scalars().all()
        for chunk in _chunks(set(owners)):
            for table in (ImageNeighbour, NeighbourList):
                connection.execute(delete(table).where(table.image_id.in_(chunk)))
    return len(owners)


def delete_space_lists(engine: Engine, space: int) -> int:
    """Delete every list of `space`, a thousand lists per transaction; return how many."""
    deleted = 0
    query = (select(NeighbourList.image_id).where(NeighbourList.space == space)
             .order_by(NeighbourList.image_id).limit(_IN_CHUNK))
    while True:
        with engine.begin() as connection:
            owners = connection.execute(query).scalars().all()
            for table in (ImageNeighbour, NeighbourList):
                connection.execute(delete(table).where(table.image_id.in_(owners),
                                                       table.space == space))
        deleted += len(owners)
        if len(owners) < _IN_CHUNK:
            return deleted


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


def set_job_counts(engine: Engine, job_id: int, counts: dict) -> None:
    """Store a running job's counts (its progress)."""
    with engine.begin() as connection:
        _set_counts(connection, job_id, counts)


def _set_counts(connection: Connection, job_id: int, counts: dict) -> None:
    connection.execute(update(Job).where(Job.id == job_id)
                       .values(counts=counts))

