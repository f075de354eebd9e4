"""The augmentation_neighbours table: each image's k nearest in the whitened space, as the
augmented space's vectors were last computed from them (numerics/augmentation.py)."""
from __future__ import annotations

import numpy as np
from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection, Engine

from db.chunks import chunks
from db.models import AugmentationNeighbour, ImageFeatures
from db.spaces import augmented_settings
from numerics.augmentation import augment
from numerics.vectors import decode_vector

_ROWS = 5000  # rows per insert statement


def load(connection: Connection, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (image ids ascending, their first k neighbour ids padded with −1)."""
    rows = np.array(connection.execute(
        select(AugmentationNeighbour.image_id, AugmentationNeighbour.position,
               AugmentationNeighbour.neighbour_id)
        .where(AugmentationNeighbour.position < k)).all(), dtype=np.int64).reshape(-1, 3)
    ids, at = np.unique(rows[:, 0], return_inverse=True)
    neighbours = np.full((len(ids), k), -1, dtype=np.int64)
    neighbours[at, rows[:, 1]] = rows[:, 2]
    return ids, neighbours


def load_all(engine: Engine, k: int) -> tuple[np.ndarray, np.ndarray]:
    with engine.connect() as connection:
        return load(connection, k)


def save(engine: Engine, ids: np.ndarray, neighbours: np.ndarray,
         replace_all: bool = False, gone=()) -> None:
    """Store the neighbours of `ids` (rows padded with −1) in place of their former ones,
    delete those of `gone` (or of every image: replace_all), in one transaction."""
    with engine.begin() as connection:
        if replace_all:
            connection.execute(delete(AugmentationNeighbour))
        else:
            for chunk in chunks(np.union1d(ids, np.asarray(gone, dtype=np.int64)).tolist()):
                connection.execute(delete(AugmentationNeighbour).where(
                    AugmentationNeighbour.image_id.in_(chunk)))
        owner, position = np.nonzero(neighbours >= 0)
        rows = [{"image_id": i, "position": p, "neighbour_id": n} for i, p, n in zip(
            np.asarray(ids)[owner].tolist(), position.tolist(),
            neighbours[owner, position].tolist())]
        for chunk in chunks(rows, _ROWS):
            connection.execute(insert(AugmentationNeighbour), chunk)


def vectors_of(connection: Connection, image_ids: list[int], projection) -> np.ndarray:
    """Return the augmented vectors of these images (float32, in their order), from their
    stored features and nearest, as the grouping job computed them."""
    k, alpha = augmented_settings(connection)
    ids = np.unique(np.asarray(image_ids, dtype=np.int64))
    neighbours = np.full((len(ids), k), -1, dtype=np.int64)
    for chunk in chunks(ids.tolist()):
        for image_id, position, neighbour_id in connection.execute(
                select(AugmentationNeighbour.image_id, AugmentationNeighbour.position,
                       AugmentationNeighbour.neighbour_id)
                .where(AugmentationNeighbour.image_id.in_(chunk),
                       AugmentationNeighbour.position < k)):
            neighbours[np.searchsorted(ids, image_id), position] = neighbour_id
    every = np.union1d(ids, neighbours[neighbours >= 0])
    vectors = np.zeros((len(every), len(projection.mean)), dtype=np.float32)
    for chunk in chunks(every.tolist()):
        for image_id, data in connection.execute(
                select(ImageFeatures.image_id, ImageFeatures.vector)
                .where(ImageFeatures.image_id.in_(chunk))):
            vectors[np.searchsorted(every, image_id)] = decode_vector(data)
    rows = np.where(neighbours >= 0, np.searchsorted(every, neighbours), -1)
    augmented = augment(projection.apply(vectors), rows, alpha, np.searchsorted(every, ids))
    return augmented[np.searchsorted(ids, image_ids)]


def delete_all(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(delete(AugmentationNeighbour))
