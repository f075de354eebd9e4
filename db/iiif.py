"""Images of IIIF collections in the images table: the import's rows and the fetch state."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, Engine

from db.chunks import chunks
from db.models import MISSING, Image, utcnow

# What the import sets from a manifest; a changed source_url also clears the validators
# and the content hash, so the next feature run fetches and computes the image again.
IMPORTED = ("source_url", "iiif_service", "iiif_source", "manifest_id", "canvas_id",
            "iiif_label")


@dataclass(frozen=True, slots=True)
class RemoteRow:
    id: int
    status: str
    values: dict  # the IMPORTED columns


def load_imported(engine: Engine) -> dict[str, RemoteRow]:
    """Return every IIIF image row by path_hash."""
    columns = [getattr(Image, name) for name in IMPORTED]
    with engine.connect() as connection:
        rows = connection.execute(select(Image.id, Image.path_hash, Image.status, *columns)
                                  .where(Image.source_url.is_not(None)))
        return {row.path_hash: RemoteRow(row.id, row.status,
                                         {name: getattr(row, name) for name in IMPORTED})
                for row in rows}


def update_imported(engine: Engine, changes: dict[int, dict], refetch: Sequence[int],
                    reappeared: Sequence[int]) -> None:
    """Set the IMPORTED columns of `changes` (id -> values); forget what was fetched for
    `refetch` (their URL changed); make `reappeared` pending again."""
    now = utcnow()
    with engine.begin() as connection:
        if changes:
            connection.execute(
                update(Image).where(Image.id == bindparam("b_id"))
                .values(updated_at=now, **{n: bindparam(f"b_{n}") for n in IMPORTED}),
                [{"b_id": id_, **{f"b_{n}": v[n] for n in IMPORTED}}
                 for id_, v in changes.items()])
        for chunk in chunks(list(refetch)):
            connection.execute(update(Image).where(Image.id.in_(chunk))
                               .values(http_etag=None, http_last_modified=None,
                                       content_hash=None, updated_at=now))
        for chunk in chunks(list(reappeared)):
            connection.execute(update(Image).where(Image.id.in_(chunk),
                                                   Image.status == MISSING)
                               .values(status="pending", http_etag=None,
                                       http_last_modified=None, updated_at=now))


def ids_of_hashes(connection: Connection, digests: Sequence[str]) -> dict[str, int]:
    """Return the image id of each of these path hashes that is stored."""
    found: dict[str, int] = {}
    for chunk in chunks(list(digests)):
        found.update(connection.execute(select(Image.path_hash, Image.id)
                                        .where(Image.path_hash.in_(chunk))).all())
    return found


@dataclass(frozen=True, slots=True)
class FetchState:
    """What the feature job needs to fetch one IIIF image."""

    id: int
    status: str
    source_url: str
    iiif_service: str | None
    content_hash: str | None
    http_etag: str | None
    http_last_modified: str | None
    size: int | None


def to_fetch(engine: Engine) -> list[FetchState]:
    """Return the IIIF images not marked missing, in id order."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(Image.id, Image.status, Image.source_url, Image.iiif_service,
                   Image.content_hash, Image.http_etag, Image.http_last_modified,
                   Image.size)
            .where(Image.source_url.is_not(None), Image.status != MISSING)
            .order_by(Image.id))
        return [FetchState(*row) for row in rows]
