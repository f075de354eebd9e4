"""The image_features table: the stored vectors, and the feature job's results."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from db.chunks import chunks
from db.models import OK, Image, ImageFeatures, utcnow


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
