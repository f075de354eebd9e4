"""Images that occur in an unusually large share of all lists: a placeholder's signature.

Each of L lists holds up to k entries, so an image occurs in about k lists on average
(entries / images). A "no image available" card, a colour chart or a blank page sits
close to everything dull and occurs in many times as many; natural hubs of the space
also occur more often than average, but rarely by as much. The report lists every image
in at least FACTOR times the mean number of lists, most frequent first, to help write
EXCLUDE_PATTERNS; it decides nothing itself.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from db.models import SPACE_IDS, Image, ImageNeighbour, NeighbourList

FACTOR = 10.0  # default threshold: times the mean number of lists an image occurs in


@dataclass(frozen=True)
class Hub:
    image_id: int
    path: str
    lists: int     # lists it occurs in
    share: float   # of all lists of the space


def find_hubs(connection: Connection, space: str, factor: float = FACTOR,
              limit: int | None = None) -> tuple[list[Hub], dict]:
    """Return the hubs of `space`, most frequent first, and the figures they are
    measured against (lists, mean occurrences, threshold)."""
    space_id = SPACE_IDS[space]
    lists, entries = connection.execute(
        select(func.count(), func.coalesce(func.sum(NeighbourList.length), 0))
        .where(NeighbourList.space == space_id)).one()
    # Every image grouped has a list: the entries spread over as many images.
    mean = int(entries) / lists if lists else 0.0  # SUM is a DECIMAL on MariaDB
    threshold = max(1, int(-(-factor * mean // 1)))  # at least factor × mean, rounded up
    count = func.count().label("lists")
    query = (select(ImageNeighbour.neighbour_id, count)
             .where(ImageNeighbour.space == space_id)
             .group_by(ImageNeighbour.neighbour_id).having(func.count() >= threshold)
             .order_by(count.desc(), ImageNeighbour.neighbour_id))
    if limit is not None:
        query = query.limit(limit)
    rows = connection.execute(query).all()
    paths = dict(connection.execute(select(Image.id, Image.path).where(
        Image.id.in_([r[0] for r in rows]))).all()) if rows else {}
    hubs = [Hub(image_id, paths[image_id], n, n / lists) for image_id, n in rows]
    return hubs, {"lists": lists, "mean_lists_per_image": round(mean, 3),
                  "threshold": threshold, "factor": factor}
