"""The image_neighbours and neighbour_lists tables: each image's list per space, read
by the service, read and written by the grouping job."""
from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import orjson
from sqlalchemy import bindparam, delete, func, select, text
from sqlalchemy.engine import Connection, Engine

from db.chunks import IN_LIST, chunks
from db.jobs import record_progress
from db.models import OK, POOL3, SPACE_IDS, CatalogueRecord, GroupingExclusion, Image, \
    ImageNeighbour, NeighbourList
from db.spaces import set_valid_through
from numerics.list_changes import ListChanges


def _image_and_neighbours_query():
    # Built once: a neighbour list is the hottest read, and building the statement
    # (aliases, joins) costs more CPU than MariaDB spends answering it.
    owner, neighbour = Image.__table__.alias("owner"), Image.__table__.alias("neighbour")
    link, record = ImageNeighbour.__table__, CatalogueRecord.__table__
    # A rank is a position in the list's order; numbering the list's (at most k) rows
    # in the database keeps the page one statement.
    ranked = (select(link.c.neighbour_id, link.c.distance,
                     func.row_number().over(order_by=(link.c.distance, link.c.neighbour_id))
                     .label("rank"))
              .where(link.c.image_id == bindparam("image_id"),
                     link.c.space == bindparam("space"))
              .subquery("ranked"))
    ranks = ranked.c.rank.between(bindparam("first_rank"), bindparam("last_rank"))
    return (select(owner.c.status, owner.c.file_name.label("owner_file_name"),
                   ranked.c.rank, ranked.c.neighbour_id.label("id"), ranked.c.distance,
                   neighbour.c.file_name, record.c.external_id, record.c.title)
            .select_from(owner
                         .outerjoin(ranked, ranks)
                         .outerjoin(neighbour, neighbour.c.id == ranked.c.neighbour_id)
                         # The catalogue's labels in the same statement: a portal shows
                         # them beside each entry without a request per neighbour.
                         .outerjoin(record, record.c.image_id == ranked.c.neighbour_id))
            .where(owner.c.id == bindparam("image_id")).order_by(ranked.c.rank))


_IMAGE_AND_NEIGHBOURS = _image_and_neighbours_query()


def image_and_neighbours(connection: Connection, image_id: int, first_rank: int = 1,
                         last_rank: int = 2**15 - 1, space: str = POOL3) -> tuple:
    """Return (status and file name of the image or None, its neighbours in `space` with
    ranks in [first_rank, last_rank]: rank, id, distance, file name, the catalogue's
    external id and title or None), nearest first."""
    # One statement, hence one round trip and one snapshot: the grouping job changes a
    # list in one transaction, so a reader sees the old list or the new one, never a mix.
    rows = connection.execute(_IMAGE_AND_NEIGHBOURS, {"image_id": image_id,
                                                   "space": SPACE_IDS[space],
                                                   "first_rank": first_rank,
                                                   "last_rank": last_rank}).all()
    if not rows:
        return None, []
    return rows[0], [row for row in rows if row.rank is not None]


def _image_and_neighbour_ids_query():
    owner, link = Image.__table__.alias("owner"), ImageNeighbour.__table__
    return (select(owner.c.status, owner.c.file_name.label("owner_file_name"),
                   link.c.neighbour_id.label("id"), link.c.distance)
            .select_from(owner.outerjoin(link, (link.c.image_id == owner.c.id)
                                         & (link.c.space == bindparam("space"))))
            .where(owner.c.id == bindparam("image_id"))
            .order_by(link.c.distance, link.c.neighbour_id))


_IMAGE_AND_NEIGHBOUR_IDS = _image_and_neighbour_ids_query()


def image_and_neighbour_ids(connection: Connection, image_id: int) -> tuple:
    """Return (status and file name of the image or None, its whole list in the
    original space: id and distance), nearest first."""
    # The original endpoint's read: neither the neighbours' names nor ranks, so neither
    # a join per entry nor a numbering; one statement, one snapshot, as above.
    rows = connection.execute(_IMAGE_AND_NEIGHBOUR_IDS, {"image_id": image_id,
                                                       "space": SPACE_IDS[POOL3]}).all()
    if not rows:
        return None, []
    return rows[0], [row for row in rows if row.id is not None]


def has_neighbours(connection: Connection, image_id: int, space: str = POOL3) -> bool:
    """Return whether the grouping job has stored a neighbour list for this image."""
    query = (select(ImageNeighbour.image_id).where(ImageNeighbour.image_id == image_id,
                                                   ImageNeighbour.space == SPACE_IDS[space])
             .limit(1))
    return connection.execute(query).first() is not None


def lists_containing(engine: Engine, space: int, neighbour_ids) -> set[int]:
    """Return the ids of the images whose lists in `space` hold any of neighbour_ids."""
    found: set[int] = set()
    query = (select(ImageNeighbour.image_id).distinct()
             .where(ImageNeighbour.neighbour_id.in_(bindparam("ids", expanding=True)),
                    ImageNeighbour.space == space))
    with engine.connect() as connection:
        for chunk in chunks(int(i) for i in neighbour_ids):
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
                    record_progress(connection, job_id, progress)
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
    for chunk in chunks(changes.replaced):
        connection.execute(delete(ImageNeighbour).where(ImageNeighbour.image_id.in_(chunk),
                                                        ImageNeighbour.space == space))
    for chunk in chunks(touched):
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


_NEIGHBOUR_INDEX = next(index for index in ImageNeighbour.__table__.indexes
                        if index.name == "ix_image_neighbours_neighbour_id")


@contextmanager
def neighbour_index_after(engine: Engine, wanted: bool) -> Iterator[None]:
    """Run the block (a full run's writes) without the neighbour_id index of
    image_neighbours and build it again after, on SQLite where `wanted`.

    Lists are written in image id order, so their key grows at the end of the table,
    but their neighbour ids are anywhere: kept up to date row by row, that index had
    SQLite's insert rate fall from 230,000 to 50,000 rows/s by 0.6 million rows; built
    after the run it takes about a second per million rows and the rate stays flat
    (bench/results/million.md). Nothing reads it while lists are written (the runs'
    plans use it before). A run killed in between leaves it missing: every run starts
    with restore_neighbour_index."""
    if not wanted or engine.dialect.name != "sqlite":
        yield
        return
    with engine.begin() as connection:
        _NEIGHBOUR_INDEX.drop(connection, checkfirst=True)
    try:
        yield
    finally:
        restore_neighbour_index(engine)


def restore_neighbour_index(engine: Engine) -> None:
    """Build the neighbour_id index of image_neighbours where it is missing (SQLite:
    only neighbour_index_after drops it)."""
    if engine.dialect.name != "sqlite":
        return
    with engine.begin() as connection:
        _NEIGHBOUR_INDEX.create(connection, checkfirst=True)


def delete_lists_of_unavailable(engine: Engine) -> int:
    """Delete the lists, in every space, of images whose status is not 'ok' or that are
    excluded from the grouping; return the lists deleted."""
    gone = select(Image.id).where(Image.status != OK)
    excluded = select(GroupingExclusion.image_id)
    with engine.begin() as connection:
        owners = connection.execute(select(NeighbourList.image_id).where(
            NeighbourList.image_id.in_(gone) | NeighbourList.image_id.in_(excluded))
        ).scalars().all()
        for chunk in chunks(set(owners)):
            for table in (ImageNeighbour, NeighbourList):
                connection.execute(delete(table).where(table.image_id.in_(chunk)))
    return len(owners)


def delete_space_lists(engine: Engine, space: int) -> int:
    """Delete every list of `space`, a thousand lists per transaction; return how many."""
    deleted = 0
    query = (select(NeighbourList.image_id).where(NeighbourList.space == space)
             .order_by(NeighbourList.image_id).limit(IN_LIST))
    while True:
        with engine.begin() as connection:
            owners = connection.execute(query).scalars().all()
            for table in (ImageNeighbour, NeighbourList):
                connection.execute(delete(table).where(table.image_id.in_(owners),
                                                       table.space == space))
        deleted += len(owners)
        if len(owners) < IN_LIST:
            return deleted
