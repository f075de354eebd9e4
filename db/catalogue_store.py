"""The catalogue records: finding the images a catalogue names, and writing records."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from db.models import MISSING, CatalogueRecord, Image, utcnow
from db.paths import hashes_of_stored_text

CHUNK = 500  # values per IN (...) list
RECORD_FIELDS = ("external_id", "title", "title_key", "url", "extra", "excluded")


def _chunks(values: Sequence, size: int = CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def ids_by_path(connection: Connection, paths: Iterable[str]) -> dict[str, int]:
    """Return the image id of each of `paths` stored in the database."""
    wanted = {}
    for path in set(paths):
        for digest in hashes_of_stored_text(path):
            wanted[digest] = path
    found = {}
    for chunk in _chunks(list(wanted)):
        query = select(Image.id, Image.path, Image.path_hash).where(Image.path_hash.in_(chunk))
        for image_id, path, digest in connection.execute(query):
            if path == wanted[digest]:  # the text as well: a hash collision is no match
                found[path] = image_id
    return found


def ids_by_file_name(connection: Connection,
                     names: Iterable[str]) -> dict[str, list[tuple[int, bool]]]:
    """Return (id, whether its status is missing) of the images with each file name."""
    found: dict[str, list[tuple[int, bool]]] = {}
    for chunk in _chunks(sorted(set(names))):
        query = (select(Image.file_name, Image.id, Image.status)
                 .where(Image.file_name.in_(chunk)).order_by(Image.id))
        for name, image_id, status in connection.execute(query):
            found.setdefault(name, []).append((image_id, status == MISSING))
    return found


def paths_of(connection: Connection, ids: Iterable[int]) -> dict[int, str]:
    result = {}
    for chunk in _chunks(sorted(set(ids))):
        result.update(connection.execute(select(Image.id, Image.path)
                                         .where(Image.id.in_(chunk))).all())
    return result


def records_of(connection: Connection, ids: Iterable[int]) -> dict[int, dict]:
    """Return the stored record of each of these images that has one."""
    columns = [getattr(CatalogueRecord, name) for name in RECORD_FIELDS]
    result = {}
    for chunk in _chunks(sorted(set(ids))):
        query = select(CatalogueRecord.image_id, *columns).where(
            CatalogueRecord.image_id.in_(chunk))
        for row in connection.execute(query):
            result[row.image_id] = {name: getattr(row, name) for name in RECORD_FIELDS}
    return result


def holders_of(connection: Connection, external_ids: Iterable[str]) -> dict[str, int]:
    """Return the image that holds each of these external ids in the database."""
    result = {}
    for chunk in _chunks(sorted(set(external_ids))):
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
    for chunk in _chunks(list(freed)):
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
