"""The image_features table: the stored vectors, and the feature job's results."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from db.chunks import chunks
from db.models import OK, Image, ImageFeatures, utcnow
from numerics.vectors import DIMENSIONS, decode_vector


@dataclass(slots=True)
class ImageResult:
    """The outcome for one image, written with the rest of its batch in one transaction."""

    image_id: int
    values: dict  # images columns to set
    vector: bytes | None = None  # new features; replace the stored ones
    regroup: bool = False  # set needs_grouping: the image enters, leaves or changes
    drop_features: bool = False  # failed now: its old features go


def with_features(engine: Engine, ids: Sequence[int]) -> set[int]:
    """Return those of `ids` that have stored features."""
    found: set[int] = set()
    with engine.connect() as connection:
        for chunk in chunks(ids):
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


def features(connection: Connection, image_id: int) -> bytes | None:
    """Return the stored feature vector bytes of an image, or None."""
    query = select(ImageFeatures.vector).where(ImageFeatures.image_id == image_id)
    return connection.execute(query).scalar()


def has_features(connection: Connection, image_id: int) -> bool:
    """Return whether an image has a stored feature vector."""
    query = select(ImageFeatures.image_id).where(ImageFeatures.image_id == image_id)
    return connection.execute(query).first() is not None


_COUNT_OK_VECTORS = (select(func.count()).select_from(Image)
                     .join(ImageFeatures, ImageFeatures.image_id == Image.id)
                     .where(Image.status == OK))


def count_ok_vectors(connection: Connection, skip=()) -> int:
    """Return how many images with status 'ok' have a vector, less those in `skip`."""
    count = connection.execute(_COUNT_OK_VECTORS).scalar_one()
    for chunk in chunks(int(i) for i in skip):
        count -= connection.execute(_COUNT_OK_VECTORS.where(Image.id.in_(chunk))).scalar_one()
    return count


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
            expected = count_ok_vectors(connection)
            pages = vector_pages(connection, batch_rows)
        else:
            expected = len(image_ids)
            pages = (connection.execute(query.where(Image.id.in_(chunk))).all()
                     for chunk in chunks(int(i) for i in image_ids))
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


def vector_versions(connection: Connection, batch_rows: int = 50_000
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Return the ids of every 'ok' image with features, ascending, and when each image
    last changed (images.updated_at: every write of a vector sets it)."""
    page = (select(Image.id, Image.updated_at)
            .join(ImageFeatures, ImageFeatures.image_id == Image.id)
            .where(Image.status == OK).order_by(Image.id).limit(batch_rows))
    ids, updated_at, last = [], [], 0
    while True:
        rows = connection.execute(page.where(Image.id > last)).all()
        ids += [row[0] for row in rows]
        updated_at += [row[1] for row in rows]
        if len(rows) < batch_rows:
            return (np.array(ids, dtype=np.int64),
                    np.array(updated_at, dtype="datetime64[us]").reshape(len(ids)))
        last = rows[-1][0]


def vectors_with_versions(connection: Connection, image_ids: Sequence[int]
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (ids, updated_at, vectors) of the 'ok' images among image_ids that have
    features, ascending, as vector_versions gives them."""
    query = (select(Image.id, Image.updated_at, ImageFeatures.vector)
             .join(ImageFeatures, ImageFeatures.image_id == Image.id)
             .where(Image.status == OK))
    rows = []
    for chunk in chunks(sorted(int(i) for i in image_ids)):
        if chunk[-1] - chunk[0] < 2 * len(chunk):
            # Dense (a first build reads every id): a range of the primary key, the
            # others dropped here, costs less than a list the server looks up one by one.
            wanted = set(chunk)
            rows += [row for row in connection.execute(query.where(
                Image.id.between(chunk[0], chunk[-1]))) if row[0] in wanted]
        else:
            rows += connection.execute(query.where(Image.id.in_(chunk))).all()
    rows.sort(key=lambda row: row[0])
    vectors = np.empty((len(rows), DIMENSIONS), dtype=np.float32)
    for row, (_, _, data) in enumerate(rows):
        vectors[row] = decode_vector(data)
    return (np.array([row[0] for row in rows], dtype=np.int64),
            np.array([row[1] for row in rows], dtype="datetime64[us]").reshape(len(rows)),
            vectors)


def load_ok_ids(engine: Engine) -> np.ndarray:
    """Return the ids of the images with status 'ok' and stored features, ascending."""
    with engine.connect() as connection:
        ids = connection.execute(select(Image.id)
                                 .join(ImageFeatures, ImageFeatures.image_id == Image.id)
                                 .where(Image.status == OK).order_by(Image.id)).scalars()
        return np.fromiter(ids, dtype=np.int64)
