"""Browsing the collection: pages of images in id or path order, and the folder tree.

Keyset paging throughout: a page starts after (or ends before) an image, found through
an index, so page 5,000 costs what page 1 does. Nothing here writes.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Connection

from db.images import IMAGE_COLUMNS
from db.models import KEY_BYTES, Image, path_key

ORDERS = ("id", "path")
MAX_SUBFOLDERS = 500  # listed at once; a folder with more says so
# Distinct folder keys per statement (see subfolders): the first few, doubling up to
# the most, so that a folder of a few big subtrees reads few keys of each.
FIRST_SUBFOLDER_BATCH, SUBFOLDER_BATCH = 16, 1024
# '/' + 1: every path under the folder "a/b" lies in [b"a/b/", b"a/b0").
_AFTER_SLASH = b"0"


@dataclass
class Page:
    rows: list
    has_previous: bool
    has_next: bool


def _folder_condition(folder: str):
    """Return the condition 'the image lies under `folder`' ('' is the whole archive)."""
    if not folder:
        return None
    prefix = path_key(folder + "/")
    if len(prefix) >= KEY_BYTES:  # the keys are cut: compare the paths themselves too
        return and_(Image.path_key == prefix[:KEY_BYTES],
                    Image.path.startswith(folder + "/", autoescape=True))
    return and_(Image.path_key >= prefix, Image.path_key < prefix[:-1] + _AFTER_SLASH)


def _filters(folder: str, status: str | None) -> list:
    conditions = [c for c in (_folder_condition(folder),) if c is not None]
    if status is not None:
        conditions.append(Image.status == status)
    return conditions


def _beyond(order: str, anchor, forward: bool):
    """Return the condition 'after (forward) or before the anchor row' in `order`."""
    if order == "id":
        return Image.id > anchor.id if forward else Image.id < anchor.id
    # Written as a range on path_key and a tie-break, so that the index serves it.
    if forward:
        return and_(Image.path_key >= anchor.path_key,
                    or_(Image.path_key > anchor.path_key, Image.id > anchor.id))
    return and_(Image.path_key <= anchor.path_key,
                or_(Image.path_key < anchor.path_key, Image.id < anchor.id))


def _sort(order: str, forward: bool) -> list:
    columns = [Image.id] if order == "id" else [Image.path_key, Image.id]
    return columns if forward else [column.desc() for column in columns]


def anchor_of(connection: Connection, image_id: int):
    """Return the (id, path_key) of an image to page from, or None if there is none."""
    return connection.execute(select(Image.id, Image.path_key)
                              .where(Image.id == image_id)).first()


def _index_for(order: str, status: str | None) -> str | None:
    """Return the index that serves a page in `order` (None: leave it to the server)."""
    if order == "path":
        return "ix_images_status_path_key" if status else "ix_images_path_key"
    return None if status else "PRIMARY"


def _fetch(connection, conditions, order, forward, limit, index=None):
    query = (select(*IMAGE_COLUMNS).where(*conditions)
             .order_by(*_sort(order, forward)).limit(limit))
    if index is not None:
        # MariaDB's optimizer takes a range that holds a third of the table for a scan
        # plus a sort, 60 times slower than walking the index for LIMIT rows.
        for dialect in ("mysql", "mariadb"):
            query = query.with_hint(Image, f"FORCE INDEX ({index})", dialect)
    rows = connection.execute(query).all()
    return rows if forward else rows[::-1]


def _exists(connection, conditions, index=None) -> bool:
    query = select(Image.id).where(*conditions).limit(1)
    if index is not None:
        for dialect in ("mysql", "mariadb"):
            query = query.with_hint(Image, f"FORCE INDEX ({index})", dialect)
    return connection.execute(query).first() is not None


def page(connection: Connection, *, order: str = "id", folder: str = "",
         status: str | None = None, after=None, before=None, limit: int = 60) -> Page:
    """Return a page of images under `folder` (with `status`), in `order`: the first,
    the one after the anchor row `after`, or the one before the anchor row `before`.

    Under a folder, path order only: no index serves id order under a path prefix."""
    if folder and order != "path":
        raise ValueError("within a folder, pages are in path order only")
    filters = _filters(folder, status)
    index = _index_for(order, status)
    if before is not None:
        rows = _fetch(connection, filters + [_beyond(order, before, False)], order, False,
                      limit + 1, index)
        if len(rows) > limit:
            return Page(rows[1:], True, True)
        after = None  # back at the start: the first page, full
    conditions = filters + ([_beyond(order, after, True)] if after is not None else [])
    rows = _fetch(connection, conditions, order, True, limit + 1, index)
    has_previous = bool(rows) and after is not None and _exists(
        connection, filters + [_beyond(order, _key_row(rows[0]), False)], index)
    if not rows and after is not None:
        has_previous = _exists(connection, filters + [_beyond(order, after, False)], index)
    return Page(rows[:limit], has_previous, len(rows) > limit)


def _key_row(row):
    return Anchor(row.id, path_key(row.path))


@dataclass
class Anchor:
    """A place to page from: an image's id and its path key."""

    id: int
    path_key: bytes


def _batch_size(connection: Connection) -> int:
    """Return how many distinct folder keys to ask for in the first statement.

    MariaDB reads DISTINCT over an index by jumping from value to value (a loose index
    scan, "Using index for group-by"), so a batch costs a seek per folder, in one
    statement. SQLite walks every image entry in between, so it asks for one at a time
    (its statements cost no round trip).
    """
    return 1 if connection.dialect.name == "sqlite" else FIRST_SUBFOLDER_BATCH


def subfolders(connection: Connection, folder: str, limit: int = MAX_SUBFOLDERS,
               batch: int | None = None) -> tuple[list[str], bool]:
    """Return the names of the folders directly in `folder` ('' is the top), sorted, and
    whether there are more than `limit`.

    Asks for the distinct folder keys under `folder` in key order, a batch at a time
    (doubling up to SUBFOLDER_BATCH); the next batch starts past the subtree of the last
    name found (the rest of its subtree adds no name). A few statements for a folder
    whose subtree holds a few thousand folders, at most one per subfolder otherwise; the
    images inside are never read. `batch` fixes the batch size (the tests try the
    batch boundaries).
    """
    prefix = path_key(folder + "/") if folder else b""
    upper = prefix[:-1] + _AFTER_SLASH if folder else None
    growing = batch is None and connection.dialect.name != "sqlite"
    batch = batch or _batch_size(connection)
    found: list[bytes] = []
    seen: set[bytes] = set()
    lower, inclusive = prefix, bool(folder)  # at the top, '' is the top's own files
    while len(found) <= limit:
        conditions = [Image.folder_key >= lower if inclusive else Image.folder_key > lower]
        if upper is not None:
            conditions.append(Image.folder_key < upper)
        values = [bytes(value) for value in connection.execute(
            select(Image.folder_key).where(*conditions).distinct()
            .order_by(Image.folder_key).limit(batch)).scalars()]
        for value in values:
            name = value[len(prefix):].split(b"/", 1)[0]
            if name not in seen:
                seen.add(name)
                found.append(_full_name(connection, prefix, name, value))
        if len(values) < batch:
            break  # the subtree is done
        if growing:
            batch = min(2 * batch, SUBFOLDER_BATCH)
        # Keys after the last one that start with prefix + name and a byte below '0' lie
        # in the last name's own subtree (anything else sorts before the last key).
        if values[-1] == prefix + name:
            lower, inclusive = values[-1], False  # its subfolders may follow
        else:
            lower, inclusive = prefix + name + _AFTER_SLASH, True  # past its subtree
    names = sorted(found[:limit])
    return [name.decode("utf-8", "replace") for name in names], len(found) > limit


def _full_name(connection: Connection, prefix: bytes, name: bytes, value: bytes) -> bytes:
    """Return the subfolder `name` whole: where the key was cut at KEY_BYTES inside it,
    from the path of an image in that folder (one statement, for such folders only)."""
    if len(value) < KEY_BYTES or len(prefix) + len(name) < KEY_BYTES:
        return name
    path = connection.execute(select(Image.path).where(Image.folder_key == value)
                              .limit(1)).scalar_one()
    return path.encode("utf-8", "surrogateescape")[len(prefix):].split(b"/", 1)[0]
