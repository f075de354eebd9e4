"""The catalogue_records table: an archive's record ids and titles, joined to images."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from db.chunks import chunks
from db.images import IMAGE_COLUMNS
from db.models import CatalogueRecord, Image, utcnow
from db.title_words import replace_words

RECORD_FIELDS = ("external_id", "title", "title_key", "url", "extra", "excluded")


def stored_records(connection: Connection, ids: Iterable[int]) -> dict[int, dict]:
    """Return the stored record of each of these images that has one."""
    columns = [getattr(CatalogueRecord, name) for name in RECORD_FIELDS]
    result = {}
    for chunk in chunks(sorted(set(ids))):
        query = select(CatalogueRecord.image_id, *columns).where(
            CatalogueRecord.image_id.in_(chunk))
        for row in connection.execute(query):
            result[row.image_id] = {name: getattr(row, name) for name in RECORD_FIELDS}
    return result


def holders_of(connection: Connection, external_ids: Iterable[str]) -> dict[str, int]:
    """Return the image that holds each of these external ids in the database."""
    result = {}
    for chunk in chunks(sorted(set(external_ids))):
        result.update(connection.execute(select(CatalogueRecord.external_id,
                                                CatalogueRecord.image_id)
                                         .where(CatalogueRecord.external_id.in_(chunk))).all())
    return result


def write_records(connection: Connection, new: dict[int, dict], changed: dict[int, dict],
                  freed: Sequence[int]) -> None:
    """Insert `new` and update `changed` records (image id -> all RECORD_FIELDS); the
    images in `freed` give up their external id first, so ids can move between images."""
    now = utcnow()
    # The unique index is checked row by row: an id moving from one image to another
    # must leave the first before it reaches the second.
    for chunk in chunks(list(freed)):
        connection.execute(update(CatalogueRecord).where(CatalogueRecord.image_id.in_(chunk))
                           .values(external_id=None, updated_at=now))
    if changed:
        statement = (update(CatalogueRecord)
                     .where(CatalogueRecord.image_id == bindparam("b_image_id"))
                     .values(updated_at=now,
                             **{name: bindparam(f"b_{name}") for name in RECORD_FIELDS}))
        connection.execute(statement, [
            {"b_image_id": image_id, **{f"b_{k}": v for k, v in values.items()}}
            for image_id, values in changed.items()])
    if new:
        connection.execute(insert(CatalogueRecord), [
            {"image_id": image_id, "updated_at": now, **values}
            for image_id, values in new.items()])
    # The search's words change with the record, in the same transaction.
    replace_words(connection, {image_id: (values["external_id"], values["title"])
                               for image_id, values in (new | changed).items()})


def records_of(connection: Connection, ids) -> dict[int, object]:
    """Return the catalogue record (external_id, title, url, extra, excluded) by image."""
    ids = sorted(set(ids))
    if not ids:
        return {}
    query = select(CatalogueRecord.image_id, CatalogueRecord.external_id,
                   CatalogueRecord.title, CatalogueRecord.url, CatalogueRecord.extra,
                   CatalogueRecord.excluded).where(CatalogueRecord.image_id.in_(ids))
    return {row.image_id: row for row in connection.execute(query)}


def labels_of(connection: Connection, ids) -> dict[int, tuple]:
    """Return (file name, external id or None, title or None) of each of these images."""
    result = {}
    for chunk in chunks(sorted(set(ids))):
        query = (select(Image.id, Image.file_name, CatalogueRecord.external_id,
                        CatalogueRecord.title)
                 .outerjoin(CatalogueRecord, CatalogueRecord.image_id == Image.id)
                 .where(Image.id.in_(chunk)))
        result.update((row.id, tuple(row[1:])) for row in connection.execute(query))
    return result


def find_by_external_id(connection: Connection, external_id: str):
    """Return the image row whose catalogue record has this external id, or None."""
    query = (select(*IMAGE_COLUMNS)
             .join(CatalogueRecord, CatalogueRecord.image_id == Image.id)
             .where(CatalogueRecord.external_id == external_id))
    return connection.execute(query).first()


def excluded_ids(connection: Connection) -> list[int]:
    """Return the ids of the images whose catalogue record says to exclude them."""
    return connection.execute(select(CatalogueRecord.image_id)
                              .where(CatalogueRecord.excluded)).scalars().all()
