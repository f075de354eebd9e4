"""The spaces table: which spaces the grouping job computes lists in, and how they stand."""
from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from db.models import AUGMENTED, SPACE_IDS, WHITENED, NeighbourList, Space, utcnow
from numerics import whitening


class ResumeState(NamedTuple):
    """Where a space's lists stand for the grouping job (Space.valid_through)."""

    valid_through: int
    k: int | None
    projection: str | None


def resume_state(engine: Engine, name: str) -> ResumeState | None:
    """Return the grouping state of space `name`, or None if no list is known valid."""
    with engine.connect() as connection:
        row = connection.execute(select(Space.valid_through, Space.k, Space.lists_projection)
                                 .where(Space.name == name)).first()
    return None if row is None or row.valid_through is None else ResumeState(*row)


def set_valid_through(connection: Connection, space: int, valid_through: int) -> None:
    """Advance a space's resume point, in the transaction that wrote its lists."""
    connection.execute(update(Space).where(Space.id == space)
                       .values(valid_through=valid_through))


def stored_whitening(engine: Engine) -> tuple[whitening.Projection | None, dict]:
    """Return the stored whitened projection and the settings it was learned with."""
    with engine.connect() as connection:
        return whitening_of(connection)


def whitening_of(connection: Connection) -> tuple[whitening.Projection | None, dict]:
    """Return the stored whitened projection and the settings it was learned with."""
    row = connection.execute(select(Space.projection, Space.learned_from, Space.learned_at,
                                    Space.whitened_dimensions, Space.whitened_shrinkage)
                             .where(Space.name == WHITENED)).first()
    if row is None or row.projection is None:
        return None, {}
    return whitening.Projection.from_bytes(
        row.projection, row.learned_from, row.learned_at, row.whitened_shrinkage), \
        {"dimensions": row.whitened_dimensions, "shrinkage": row.whitened_shrinkage}


def augmented_settings(connection: Connection) -> tuple[int, float] | None:
    """Return (k, α) the augmented space's vectors are computed with, or None if it is
    not computed."""
    row = connection.execute(select(Space.augmented_k, Space.augmented_alpha).where(
        Space.name == AUGMENTED, Space.dimensions.is_not(None))).first()
    return None if row is None or row.augmented_k is None else (row.augmented_k,
                                                                row.augmented_alpha)


def save_space(engine: Engine, name: str, **values) -> None:
    """Insert or update the row of space `name` with these column values."""
    values["updated_at"] = utcnow()
    with engine.begin() as connection:
        updated = connection.execute(update(Space).where(Space.name == name)
                                     .values(**values)).rowcount
        if not updated:
            connection.execute(insert(Space).values(id=SPACE_IDS[name], name=name,
                                                    **{"lists": 0, **values}))


def count_lists(engine: Engine, name: str) -> int:
    """Return how many lists space `name` holds."""
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(NeighbourList).where(
            NeighbourList.space == SPACE_IDS[name])).scalar_one()


def delete_space(engine: Engine, name: str) -> None:
    """Delete the row of space `name` (its lists must be gone already)."""
    with engine.begin() as connection:
        connection.execute(delete(Space).where(Space.name == name))


def overview(connection: Connection) -> dict[str, dict]:
    """Return how each stored space stands, by name (without its projection)."""
    query = select(Space.name, Space.dimensions, Space.learned_from,
                   Space.learned_at, Space.lists, Space.note).order_by(Space.id)
    return {row.name: row._asdict() for row in connection.execute(query)}
