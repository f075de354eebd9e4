"""The read queries of the service: images, neighbour lists, features, counts, jobs.

Every function takes a SQLAlchemy Connection and returns plain values (Row tuples or
dicts); nothing here writes.
"""
from __future__ import annotations

import random

from sqlalchemy import bindparam, exists, func, select
from sqlalchemy.engine import Connection

from db.models import OK, POOL3, SPACE_IDS, STATUSES, GroupingExclusion, Image, \
    ImageFeatures, ImageNeighbour, Job, Space
from db.paths import hashes_of_stored_text

# Columns the service shows for an image (the error text only on the detail view).
# path_hash says which file a path with \xNN in its text is (db/paths.py).
IMAGE_COLUMNS = (Image.id, Image.path, Image.path_hash, Image.file_name, Image.size,
                 Image.content_hash, Image.width, Image.height, Image.status, Image.error,
                 Image.updated_at,
                 # Left out of the grouping by its latest run (grouping/exclusions.py).
                 exists().where(GroupingExclusion.image_id == Image.id).label("excluded"))
JOB_KINDS = ("features", "grouping")


def get_image(connection: Connection, image_id: int):
    """Return the image row with this id, or None."""
    return connection.execute(select(*IMAGE_COLUMNS).where(Image.id == image_id)).first()


def exclusion(connection: Connection, image_id: int):
    """Return (reason, excluded_at) if the latest grouping run excluded the image, or None."""
    return connection.execute(select(GroupingExclusion.reason, GroupingExclusion.excluded_at)
                              .where(GroupingExclusion.image_id == image_id)).first()


def list_images(connection: Connection, after_id: int, limit: int) -> list:
    """Return up to `limit` image rows with id > after_id, in id order (keyset paging)."""
    query = (select(*IMAGE_COLUMNS).where(Image.id > after_id)
             .order_by(Image.id).limit(limit))
    return connection.execute(query).all()


def find_by_path(connection: Connection, path: str) -> list:
    """Return the image stored under this path relative to IMAGE_ROOT (0 or 1 rows)."""
    # The hash finds the row through its index; comparing the text as well guards
    # against a (theoretical) hash collision.
    query = select(*IMAGE_COLUMNS).where(Image.path_hash.in_(hashes_of_stored_text(path)))
    return [row for row in connection.execute(query).all() if row.path == path]


def find_by_name(connection: Connection, name: str, after_id: int, limit: int) -> list:
    """Return up to `limit` images with this exact file name and id > after_id."""
    query = (select(*IMAGE_COLUMNS)
             .where(Image.file_name == name, Image.id > after_id)
             .order_by(Image.id).limit(limit))
    return connection.execute(query).all()


def find_by_name_prefix(connection: Connection, prefix: str, limit: int) -> list:
    """Return up to `limit` images whose file name starts with `prefix`."""
    # autoescape makes % and _ in the user's text match literally.
    query = (select(*IMAGE_COLUMNS)
             .where(Image.file_name.startswith(prefix, autoescape=True))
             .order_by(Image.file_name, Image.id).limit(limit))
    return connection.execute(query).all()


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


def features(connection: Connection, image_id: int) -> bytes | None:
    """Return the stored feature vector bytes of an image, or None."""
    query = select(ImageFeatures.vector).where(ImageFeatures.image_id == image_id)
    return connection.execute(query).scalar()


def has_features(connection: Connection, image_id: int) -> bool:
    """Return whether an image has a stored feature vector."""
    query = select(ImageFeatures.image_id).where(ImageFeatures.image_id == image_id)
    return connection.execute(query).first() is not None


def count_by_status(connection: Connection) -> dict[str, int]:
    """Return the number of images in each status (every status present, maybe 0)."""
    counts = dict.fromkeys(STATUSES, 0)
    query = select(Image.status, func.count()).group_by(Image.status)
    counts.update({status: number for status, number in connection.execute(query).all()})
    return counts


def count_ok(connection: Connection) -> int:
    """Return the number of images whose features are current (status ok)."""
    return connection.execute(select(func.count()).where(Image.status == OK)).scalar_one()


def last_jobs(connection: Connection) -> dict[str, dict | None]:
    """Return the latest run of each job kind as a dict, or None if it never ran."""
    result = {}
    for kind in JOB_KINDS:
        query = (select(Job.id, Job.started_at, Job.finished_at, Job.outcome, Job.counts,
                        Job.message).where(Job.kind == kind)
                 .order_by(Job.started_at.desc(), Job.id.desc()).limit(1))
        job = connection.execute(query).first()
        result[kind] = None if job is None else {
            "id": job.id, "started_at": job.started_at, "finished_at": job.finished_at,
            "outcome": job.outcome, "counts": job.counts, "message": job.message}
    return result


def previous_id(connection: Connection, image_id: int) -> int | None:
    """Return the largest image id below `image_id`, or None."""
    return connection.execute(select(func.max(Image.id)).where(Image.id < image_id)).scalar()


def next_id(connection: Connection, image_id: int) -> int | None:
    """Return the smallest image id above `image_id`, or None."""
    return connection.execute(select(func.min(Image.id)).where(Image.id > image_id)).scalar()


def random_ok_id(connection: Connection, rng: random.Random | None = None) -> int | None:
    """Return the id of a random image with status ok, or None if there is none."""
    # A random point in the id range and the next ok id at or after it: two index
    # look-ups, where ORDER BY RAND() would sort the whole table.
    low, high = connection.execute(select(func.min(Image.id), func.max(Image.id))
                                .where(Image.status == OK)).one()
    if low is None:
        return None
    start = (rng or random).randint(low, high)
    query = (select(Image.id).where(Image.status == OK, Image.id >= start)
             .order_by(Image.id).limit(1))
    return connection.execute(query).scalar()
