"""The image_neighbours and neighbour_lists tables: each image's list per space."""
from __future__ import annotations

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection

from db.models import POOL3, SPACE_IDS, Image, ImageNeighbour, Space


def _image_and_neighbours_query():
    # Built once: a neighbour list is the hottest read, and building the statement
    # (aliases, joins) costs more CPU than MariaDB spends answering it.
    owner, neighbour = Image.__table__.alias("owner"), Image.__table__.alias("neighbour")
    link = ImageNeighbour.__table__
    # A rank is a position in the list's order; numbering the list's (at most k) rows
    # in the database keeps the page one statement.
    ranked = (select(link.c.neighbour_id, link.c.distance,
                     func.row_number().over(order_by=(link.c.distance, link.c.neighbour_id))
                     .label("rank"))
              .where(link.c.image_id == bindparam("image_id"),
                     link.c.space == bindparam("space"))
              .subquery("ranked"))
    ranks = ranked.c.rank.between(bindparam("first_rank"), bindparam("last_rank"))
    return (select(owner.c.status, owner.c.file_name.label("owner_file_name"),
                   ranked.c.rank, ranked.c.neighbour_id.label("id"), ranked.c.distance,
                   neighbour.c.file_name)
            .select_from(owner
                         .outerjoin(ranked, ranks)
                         .outerjoin(neighbour, neighbour.c.id == ranked.c.neighbour_id))
            .where(owner.c.id == bindparam("image_id")).order_by(ranked.c.rank))


_IMAGE_AND_NEIGHBOURS = _image_and_neighbours_query()


def image_and_neighbours(connection: Connection, image_id: int, first_rank: int = 1,
                         last_rank: int = 2**15 - 1, space: str = POOL3) -> tuple:
    """Return (status and file name of the image or None, its neighbours in `space` with
    ranks in [first_rank, last_rank]: rank, id, distance, file name), nearest first."""
    # One statement, hence one round trip and one snapshot: the grouping job changes a
    # list in one transaction, so a reader sees the old list or the new one, never a mix.
    rows = connection.execute(_IMAGE_AND_NEIGHBOURS, {"image_id": image_id,
                                                   "space": SPACE_IDS[space],
                                                   "first_rank": first_rank,
                                                   "last_rank": last_rank}).all()
    if not rows:
        return None, []
    return rows[0], [row for row in rows if row.rank is not None]


def _image_and_neighbour_ids_query():
    owner, link = Image.__table__.alias("owner"), ImageNeighbour.__table__
    return (select(owner.c.status, owner.c.file_name.label("owner_file_name"),
                   link.c.neighbour_id.label("id"), link.c.distance)
            .select_from(owner.outerjoin(link, (link.c.image_id == owner.c.id)
                                         & (link.c.space == bindparam("space"))))
            .where(owner.c.id == bindparam("image_id"))
            .order_by(link.c.distance, link.c.neighbour_id))


_IMAGE_AND_NEIGHBOUR_IDS = _image_and_neighbour_ids_query()


def image_and_neighbour_ids(connection: Connection, image_id: int) -> tuple:
    """Return (status and file name of the image or None, its whole list in the
    original space: id and distance), nearest first."""
    # The original endpoint's read: neither the neighbours' names nor ranks, so neither
    # a join per entry nor a numbering; one statement, one snapshot, as above.
    rows = connection.execute(_IMAGE_AND_NEIGHBOUR_IDS, {"image_id": image_id,
                                                       "space": SPACE_IDS[POOL3]}).all()
    if not rows:
        return None, []
    return rows[0], [row for row in rows if row.id is not None]


def has_neighbours(connection: Connection, image_id: int, space: str = POOL3) -> bool:
    """Return whether the grouping job has stored a neighbour list for this image."""
    query = (select(ImageNeighbour.image_id).where(ImageNeighbour.image_id == image_id,
                                                   ImageNeighbour.space == SPACE_IDS[space])
             .limit(1))
    return connection.execute(query).first() is not None


def spaces(connection: Connection) -> dict[str, dict]:
    """Return how each stored space stands, by name (without its projection)."""
    query = select(Space.name, Space.dimensions, Space.parameters, Space.learned_from,
                   Space.learned_at, Space.lists, Space.note).order_by(Space.id)
    return {row.name: row._asdict() for row in connection.execute(query)}
