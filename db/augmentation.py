"""The augmentation_neighbours table: each image's k nearest in the whitened space, as the
augmented space's vectors were last computed from them (numerics/augmentation.py)."""
from __future__ import annotations

import numpy as np
from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection, Engine

from db.chunks import chunks
from db.models import AugmentationNeighbour

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


def delete_all(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(delete(AugmentationNeighbour))
