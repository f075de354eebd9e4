"""The images table: registering files, finding images by id, path or name, counting."""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Iterator, Sequence

from sqlalchemy import exists, func, insert, select, tuple_, update
from sqlalchemy.engine import Connection, Engine

from db.chunks import chunks
from db.models import MISSING, OK, PENDING, STATUSES, GroupingExclusion, Image, utcnow
from db.paths import hashes_of_stored_text

# Columns the service shows for an image (the error text only on the detail view).
# path_hash says which file a path with \xNN in its text is (db/paths.py).
IMAGE_COLUMNS = (Image.id, Image.path, Image.path_hash, Image.file_name, Image.size,
                 Image.content_hash, Image.width, Image.height, Image.status, Image.error,
                 Image.updated_at,
                 # IIIF images (db/iiif.py): where the service gets them, their manifest.
                 Image.source_url, Image.iiif_service, Image.manifest_id, Image.canvas_id,
                 # Left out of the grouping by its latest run (jobs/grouping/exclusions.py).
                 exists().where(GroupingExclusion.image_id == Image.id).label("excluded"))


def get_image(connection: Connection, image_id: int):
    """Return the image row with this id, or None."""
    return connection.execute(select(*IMAGE_COLUMNS).where(Image.id == image_id)).first()


def get_images(connection: Connection, ids: Iterable[int]) -> dict[int, object]:
    """Return the image rows with these ids, by id (absent ids are left out)."""
    ids = sorted(set(ids))
    if not ids:
        return {}
    return {row.id: row for row in connection.execute(
        select(*IMAGE_COLUMNS).where(Image.id.in_(ids)))}


def list_images(connection: Connection, after_id: int, limit: int, *,
                before_id: int | None = None, name: str | None = None) -> list:
    """Return up to `limit` image rows (with this file name, if given) in id order
    (keyset paging): the first with id > after_id, or with `before_id` the last with
    id < before_id."""
    query = select(*IMAGE_COLUMNS).limit(limit)
    if name is not None:
        query = query.where(Image.file_name == name)
    if before_id is not None:
        rows = connection.execute(query.where(Image.id < before_id)
                                  .order_by(Image.id.desc())).all()
        return rows[::-1]
    return connection.execute(query.where(Image.id > after_id).order_by(Image.id)).all()


def find_by_path(connection: Connection, path: str) -> list:
    """Return the image stored under this path relative to IMAGE_ROOT (0 or 1 rows)."""
    # The hash finds the row through its index; comparing the text as well guards
    # against a (theoretical) hash collision.
    query = select(*IMAGE_COLUMNS).where(Image.path_hash.in_(hashes_of_stored_text(path)))
    return [row for row in connection.execute(query).all() if row.path == path]


def find_by_name(connection: Connection, name: str, after_id: int, limit: int) -> list:
    """Return up to `limit` images with this exact file name and id > after_id."""
    return list_images(connection, after_id, limit, name=name)


def find_by_name_prefix(connection: Connection, prefix: str, limit: int) -> list:
    """Return up to `limit` images whose file name starts with `prefix`."""
    # autoescape makes % and _ in the user's text match literally.
    query = (select(*IMAGE_COLUMNS)
             .where(Image.file_name.startswith(prefix, autoescape=True))
             .order_by(Image.file_name, Image.id).limit(limit))
    return connection.execute(query).all()


def count_by_status(connection: Connection) -> dict[str, int]:
    """Return the number of images in each status (every status present, maybe 0)."""
    counts = dict.fromkeys(STATUSES, 0)
    query = select(Image.status, func.count()).group_by(Image.status)
    counts.update({status: number for status, number in connection.execute(query).all()})
    return counts


def previous_id(connection: Connection, image_id: int) -> int | None:
    """Return the largest image id below `image_id`, or None."""
    return connection.execute(select(func.max(Image.id)).where(Image.id < image_id)).scalar()


def next_id(connection: Connection, image_id: int) -> int | None:
    """Return the smallest image id above `image_id`, or None."""
    return connection.execute(select(func.min(Image.id)).where(Image.id > image_id)).scalar()


def random_ok_id(connection: Connection, rng: random.Random | None = None) -> int | None:
    """Return the id of a random image with status ok, or None if there is none."""
    # A random point in the id range and the next ok id at or after it: two index
    # look-ups, where ORDER BY RAND() would sort the whole table.
    low, high = connection.execute(select(func.min(Image.id), func.max(Image.id))
                                .where(Image.status == OK)).one()
    if low is None:
        return None
    start = (rng or random).randint(low, high)
    query = (select(Image.id).where(Image.status == OK, Image.id >= start)
             .order_by(Image.id).limit(1))
    return connection.execute(query).scalar()


# Rows per page when loading every known image; keyset paging keeps memory on the
# server and in the driver flat (mysql-connector has no server-side cursors here).
PAGE = 50_000


@dataclass(frozen=True, slots=True)
class KnownImage:
    """What the job needs to know about an images row to compare it with the disk."""

    id: int
    size: int | None
    mtime_ns: int | None
    status: str
    content_hash: str | None


def load_known(engine: Engine, page: int = PAGE) -> dict[str, KnownImage]:
    """Return every images row of a file (not of a IIIF collection, db/iiif.py) keyed by
    path_hash, read page by page in id order."""
    known: dict[str, KnownImage] = {}
    columns = (Image.id, Image.path_hash, Image.size, Image.mtime_ns, Image.status,
               Image.content_hash, Image.source_url)
    with engine.connect() as connection:
        for id_, path_hash, size, mtime_ns, status, content_hash, url in _in_id_order(
                connection, columns, page):
            if url is None:
                known[path_hash] = KnownImage(id_, size, mtime_ns, status, content_hash)
    return known


def paths_of(connection: Connection, ids: Iterable[int]) -> dict[int, str]:
    """Return the stored path of each of `ids`."""
    paths: dict[int, str] = {}
    for chunk in chunks(sorted(set(ids))):
        paths.update(connection.execute(
            select(Image.id, Image.path).where(Image.id.in_(chunk))).all())
    return paths


def mark_missing(engine: Engine, ids: Sequence[int]) -> None:
    """Set status 'missing' on `ids`; those that were in the grouping need regrouping."""
    for chunk in chunks(ids):
        now = utcnow()
        with engine.begin() as connection:
            connection.execute(update(Image).where(Image.id.in_(chunk), Image.status == OK)
                               .values(status=MISSING, needs_grouping=True, updated_at=now))
            connection.execute(update(Image).where(Image.id.in_(chunk),
                                                   Image.status != MISSING)
                               .values(status=MISSING, updated_at=now))


def register(engine: Engine, rows: Sequence[dict]) -> dict[str, int]:
    """Insert 'pending' rows (path, path_hash, file_name, size, mtime_ns); return their ids.

    Each chunk is its own transaction: a killed run leaves whole chunks, which the next
    run finds as 'pending' and finishes.
    """
    ids: dict[str, int] = {}
    for chunk in chunks(rows):
        now = utcnow()
        with engine.begin() as connection:
            connection.execute(insert(Image), [
                {**row, "status": PENDING, "needs_grouping": False, "created_at": now,
                 "updated_at": now} for row in chunk])
            hashes = [row["path_hash"] for row in chunk]
            ids.update(connection.execute(select(Image.path_hash, Image.id)
                                          .where(Image.path_hash.in_(hashes))).all())
    return ids


def ids_by_path(connection: Connection, paths: Iterable[str]) -> dict[str, int]:
    """Return the image id of each of `paths` stored in the database."""
    wanted = {}
    for path in set(paths):
        for digest in hashes_of_stored_text(path):
            wanted[digest] = path
    found = {}
    for chunk in chunks(list(wanted)):
        query = select(Image.id, Image.path, Image.path_hash).where(Image.path_hash.in_(chunk))
        for image_id, path, digest in connection.execute(query):
            if path == wanted[digest]:  # the text as well: a hash collision is no match
                found[path] = image_id
    return found


def ids_by_file_name(connection: Connection,
                     names: Iterable[str]) -> dict[str, list[tuple[int, bool]]]:
    """Return (id, whether its status is missing) of the images with each file name."""
    found: dict[str, list[tuple[int, bool]]] = {}
    for chunk in chunks(sorted(set(names))):
        query = (select(Image.file_name, Image.id, Image.status)
                 .where(Image.file_name.in_(chunk)).order_by(Image.id))
        for name, image_id, status in connection.execute(query):
            found.setdefault(name, []).append((image_id, status == MISSING))
    return found


def paths_in_id_order(connection: Connection, page: int = PAGE) -> Iterator[tuple[int, str]]:
    """Yield (id, path) of every image, read in keyset pages, never all at once."""
    return _in_id_order(connection, (Image.id, Image.path), page)


def _in_id_order(connection: Connection, columns, page: int) -> Iterator:
    """Yield the rows of `columns` (the id first) of every image in id order, a keyset
    page at a time: memory on the server and in the driver stays flat."""
    last = 0
    query = select(*columns).order_by(Image.id).limit(page)
    while True:
        rows = connection.execute(query.where(Image.id > last)).all()
        yield from rows
        if len(rows) < page:
            return
        last = rows[-1][0]


@dataclass(frozen=True)
class Changed:
    """An image flagged needs_grouping, as it was when the run read it."""

    id: int
    status: str
    updated_at: datetime


def load_changed(engine: Engine) -> list[Changed]:
    """Return the images flagged needs_grouping."""
    with engine.connect() as connection:
        rows = connection.execute(select(Image.id, Image.status, Image.updated_at)
                                  .where(Image.needs_grouping.is_(True))
                                  .order_by(Image.id))
        return [Changed(*row) for row in rows]


def clear_needs_grouping(engine: Engine, changed: list[Changed]) -> int:
    """Clear needs_grouping of images not changed since read; return how many."""
    # An image changed again meanwhile (a concurrent feature run) has a new updated_at
    # or status and keeps its flag for the next run. updated_at is set to itself so that
    # clearing the flag does not count as a change of the image. One transaction per
    # thousand images: the id list lets the server use the primary key.
    cleared = 0
    for chunk in chunks(changed):
        ids = [c.id for c in chunk]
        with engine.begin() as connection:
            statement = update(Image).values(needs_grouping=False, updated_at=Image.updated_at)
            if connection.dialect.name == "sqlite":
                # SQLite looks the row values up in an index it builds of the list.
                statement = statement.where(tuple_(Image.id, Image.updated_at, Image.status)
                                            .in_([(c.id, c.updated_at, c.status)
                                                  for c in chunk]))
            else:
                # MariaDB compares each row with every tuple of such a list (1,200
                # rows/s at a thousand per list): the rows are compared here instead,
                # locked until the update commits.
                read = {c.id: (c.updated_at, c.status) for c in chunk}
                rows = connection.execute(
                    select(Image.id, Image.updated_at, Image.status)
                    .where(Image.id.in_(ids), Image.needs_grouping.is_(True))
                    .with_for_update()).all()
                ids = [row.id for row in rows if read[row.id] == (row.updated_at, row.status)]
            cleared += connection.execute(statement.where(
                Image.id.in_(ids), Image.needs_grouping.is_(True))).rowcount
    return cleared
