"""What a write changes in some images' neighbour lists: the grouping's unit of work."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ListChanges:
    """What a transaction changes in some images' lists.

    replaced: images whose rows are all deleted first (lists recomputed whole);
    removed: (image id, neighbour id) rows deleted (entries pushed out of a list);
    added: (image id, neighbour id, distance) rows inserted;
    ends: (image id, length, last distance, last neighbour id) of every list touched.
    """

    replaced: list[int]
    removed: list[tuple[int, int]]
    added: list[tuple[int, int, float]]
    ends: list[tuple[int, int, float, int]]

    @classmethod
    def replacing(cls, image_ids, neighbour_ids, distances) -> "ListChanges":
        """Return the changes that store these whole lists (rows padded with −1)."""
        image_ids = np.asarray(image_ids, dtype=np.int64)
        valid = neighbour_ids >= 0
        owner = np.broadcast_to(image_ids[:, None], neighbour_ids.shape)
        lengths = valid.sum(axis=1)
        last = np.maximum(lengths - 1, 0)
        rows = np.arange(len(image_ids))
        has = lengths > 0
        # Plain Python numbers: the drivers do not take numpy scalars.
        return cls(image_ids.tolist(), [],
                   list(zip(owner[valid].tolist(), neighbour_ids[valid].tolist(),
                            distances[valid].tolist())),
                   list(zip(image_ids[has].tolist(), lengths[has].tolist(),
                            distances[rows, last][has].tolist(),
                            neighbour_ids[rows, last][has].tolist())))

    def lists(self) -> int:
        return len(self.ends) + len(set(self.replaced) - {end[0] for end in self.ends})
