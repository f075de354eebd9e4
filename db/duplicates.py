"""Near-duplicate groups: connected components of the stored lists' close pairs.

Two images are linked when one is in the other's stored list at a distance of at most
max_distance; a group is a connected component of those links (union-find), so a chain
of close copies is one group even where its ends are farther apart. Groups come largest
first, then by their first (lowest) id; each member's distance is to that first image,
computed from the stored vectors in the space (it need not be in the lists).

Only pairs in the lists are seen: an image with more than k copies within the distance
still links to k of them, and through them to the rest. Reading the pairs costs one key
range per list (the key starts with image_id, space, distance), not a scan of every row.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from db.chunks import chunks
import db.augmentation
from db.models import AUGMENTED, POOL3, SPACE_IDS, CatalogueRecord, Image, ImageFeatures, \
    ImageNeighbour, NeighbourList
from db.spaces import whitening_of
from numerics.union_find import components
from numerics.vectors import decode_vector

@dataclass(frozen=True)
class Member:
    image_id: int
    path: str
    file_name: str
    external_id: str | None  # the catalogue's record id
    title: str | None        # the catalogue's title
    distance: float          # to the group's first image, in the space


def close_pairs(connection: Connection, space: str, max_distance: float) -> np.ndarray:
    """Return the (n, 2) pairs (owner, neighbour) of the stored lists of `space` within
    max_distance."""
    owners = connection.execute(select(NeighbourList.image_id)
                                .where(NeighbourList.space == SPACE_IDS[space])
                                .order_by(NeighbourList.image_id)).scalars().all()
    query = (select(ImageNeighbour.image_id, ImageNeighbour.neighbour_id)
             .where(ImageNeighbour.image_id.in_(bindparam("ids", expanding=True)),
                    ImageNeighbour.space == SPACE_IDS[space],
                    ImageNeighbour.distance <= max_distance))
    pairs = []
    for chunk in chunks(owners):
        pairs += connection.execute(query, {"ids": chunk}).all()
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def find_groups(connection: Connection, space: str, max_distance: float) -> list[list[int]]:
    """Return the near-duplicate groups of `space` (ids), largest first."""
    return components(close_pairs(connection, space, max_distance))


def describe(connection: Connection, groups: list[list[int]],
             space: str) -> list[list[Member]]:
    """Return the members of these groups with their paths and distances to the first."""
    ids = [i for group in groups for i in group]
    rows = {}
    for chunk in chunks(ids):
        for row in connection.execute(
                select(Image.id, Image.path, Image.file_name, ImageFeatures.vector,
                       CatalogueRecord.external_id, CatalogueRecord.title)
                .join(ImageFeatures, ImageFeatures.image_id == Image.id)
                .outerjoin(CatalogueRecord, CatalogueRecord.image_id == Image.id)
                .where(Image.id.in_(chunk))):
            rows[row.id] = row
    if not ids:
        return []
    vectors = np.stack([decode_vector(rows[i].vector) for i in ids])
    if space != POOL3:
        projection, _ = whitening_of(connection)
        if projection is None:
            raise ValueError("the whitened space is not computed")
        vectors = (db.augmentation.vectors_of(connection, ids, projection)
                   if space == AUGMENTED else projection.apply(vectors))
    vectors = vectors.astype(np.float64)
    described, at = [], 0
    for group in groups:
        part = vectors[at:at + len(group)]
        distances = np.sqrt(((part - part[0]) ** 2).sum(axis=1))
        described.append([Member(i, rows[i].path, rows[i].file_name, rows[i].external_id,
                                 rows[i].title, float(d))
                          for i, d in zip(group, distances)])
        at += len(group)
    return described
