"""The queries of the feature job: known images, registering, marking missing, results."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Iterable, Iterator, Sequence

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Engine

from db.models import MISSING, OK, PENDING, Image, ImageFeatures, utcnow

# Rows per statement/transaction for the bookkeeping writes (not the model batches).
CHUNK = 1000
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


@dataclass(slots=True)
class ImageResult:
    """The outcome for one image, written with the rest of its batch in one transaction."""

    image_id: int
    values: dict  # images columns to set
    vector: bytes | None = None  # new features; replace the stored ones
    regroup: bool = False  # set needs_grouping: the image enters, leaves or changes
    drop_features: bool = False  # failed now: its old features go


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def load_known(engine: Engine, page: int = PAGE) -> dict[str, KnownImage]:
    """Return every images row keyed by path_hash, read page by page in id order."""
    known: dict[str, KnownImage] = {}
    columns = (Image.id, Image.path_hash, Image.size, Image.mtime_ns, Image.status,
               Image.content_hash)
    last = 0
    with engine.connect() as connection:
        while True:
            rows = connection.execute(select(*columns).where(Image.id > last)
                                      .order_by(Image.id).limit(page)).all()
            for id_, path_hash, size, mtime_ns, status, content_hash in rows:
                known[path_hash] = KnownImage(id_, size, mtime_ns, status, content_hash)
            if len(rows) < page:
                return known
            last = rows[-1][0]


def paths_of(engine: Engine, ids: Sequence[int]) -> dict[int, str]:
    """Return the stored path of each of `ids`."""
    paths: dict[int, str] = {}
    with engine.connect() as connection:
        for chunk in _chunks(ids, CHUNK):
            paths.update(connection.execute(
                select(Image.id, Image.path).where(Image.id.in_(chunk))).all())
    return paths


def with_features(engine: Engine, ids: Sequence[int]) -> set[int]:
    """Return those of `ids` that have stored features."""
    found: set[int] = set()
    with engine.connect() as connection:
        for chunk in _chunks(ids, CHUNK):
            found.update(connection.execute(select(ImageFeatures.image_id)
                                            .where(ImageFeatures.image_id.in_(chunk))).scalars())
    return found


def outdated_ids(engine: Engine, model: str) -> frozenset[int]:
    """Return the ids of the images whose stored vector another model made."""
    # Through the index on model: a database without such vectors answers at once.
    with engine.connect() as connection:
        return frozenset(connection.execute(select(ImageFeatures.image_id)
                                            .where(ImageFeatures.model != model)).scalars())


def other_models(engine: Engine, model: str) -> dict[str, int]:
    """Return how many 'ok' images have a vector that a model other than `model` made,
    by model."""
    with engine.connect() as connection:
        return dict(connection.execute(
            select(ImageFeatures.model, func.count())
            .join(Image, Image.id == ImageFeatures.image_id)
            .where(ImageFeatures.model != model, Image.status == OK)
            .group_by(ImageFeatures.model)).all())


def mark_missing(engine: Engine, ids: Sequence[int]) -> None:
    """Set status 'missing' on `ids`; those that were in the grouping need regrouping."""
    for chunk in _chunks(ids, CHUNK):
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
    for chunk in _chunks(rows, CHUNK):
        now = utcnow()
        with engine.begin() as connection:
            connection.execute(insert(Image), [
                {**row, "status": PENDING, "needs_grouping": False, "created_at": now,
                 "updated_at": now} for row in chunk])
            hashes = [row["path_hash"] for row in chunk]
            ids.update(connection.execute(select(Image.path_hash, Image.id)
                                          .where(Image.path_hash.in_(hashes))).all())
    return ids


def write_results(engine: Engine, results: Sequence[ImageResult], model: str) -> None:
    """Write a batch of outcomes (rows and features) in one transaction."""
    if not results:
        return
    now = utcnow()
    # executemany needs the same columns in every row: one statement per column set.
    groups: dict[tuple, list[dict]] = {}
    for result in results:
        key = (tuple(sorted(result.values)), result.regroup)
        groups.setdefault(key, []).append(
            {"b_id": result.image_id, **{f"b_{k}": v for k, v in result.values.items()}})
    stale = [r.image_id for r in results if r.vector is not None or r.drop_features]
    fresh = [{"image_id": r.image_id, "model": model, "vector": r.vector, "created_at": now}
             for r in results if r.vector is not None]
    with engine.begin() as connection:
        for (columns, regroup), params in groups.items():
            values = {c: bindparam(f"b_{c}") for c in columns}
            values["updated_at"] = now
            if regroup:
                values["needs_grouping"] = True
            connection.execute(update(Image).where(Image.id == bindparam("b_id"))
                               .values(**values), params)
        if stale:
            connection.execute(delete(ImageFeatures).where(ImageFeatures.image_id.in_(stale)))
        if fresh:
            connection.execute(insert(ImageFeatures), fresh)

