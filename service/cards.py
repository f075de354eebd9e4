"""One card for every grid of the pages: neighbours, browse, search results, duplicates.

A card names an image by its catalogue title, else its file name; it adds the folder
where two cards of one grid would read alike, gives the whole text on hover, says in
words how close a neighbour is (the number on hover), shows why a file failed instead
of a picture it does not have, and links to the image page in the space being viewed.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from flask import request, url_for

from db.models import FAILED, MISSING, SPACE_IDS
from runtime import distances


@dataclass(frozen=True)
class Item:
    """What a grid knows of an image."""

    id: int
    path: str
    file_name: str
    status: str = "ok"
    error: str | None = None
    rank: int | None = None
    distance: float | None = None


@dataclass(frozen=True)
class Card:
    id: int
    href: str
    thumbnail: str | None  # None: a failed or missing file has no picture
    name: str
    folder: str | None     # shown where names repeat in the grid
    hover: str
    status: str
    reason: str | None
    rank: int | None
    distance: float | None
    word: str | None
    catalogued: bool
    path: str


def folder_of(path: str) -> str:
    return path.rpartition("/")[0]


def kept_space() -> str | None:
    """Return the space this request asked for, to be kept on its links, or None."""
    space = request.args.get("space") or request.form.get("space")
    return space if space in SPACE_IDS else None


def unavailable_reason(status: str, error: str | None) -> str | None:
    """Return why an image has no picture, or None when it has one."""
    if status == FAILED:
        return f"Failed: {error}" if error else "Failed"
    if status == MISSING:
        return "File missing"
    return None


def cards(items: list[Item], records: dict, space: str | None = None,
          link_space: str | None = None) -> list[Card]:
    """Return the cards of a grid; `space` words the distances, `link_space` is kept on
    the links (default: the space the request asked for)."""
    link_space = link_space or kept_space()
    names = [_name(item, records.get(item.id)) for item in items]
    repeated = {name for name, count in Counter(names).items() if count > 1}
    result = []
    for item, name in zip(items, names):
        record = records.get(item.id)
        reason = unavailable_reason(item.status, item.error)
        hover = " · ".join(part for part in (
            name, record.external_id if record is not None else None, item.path,
            reason) if part)
        word = None
        if item.distance is not None and space is not None:
            word = distances.word(space, item.distance)
        result.append(Card(
            id=item.id, href=url_for("pages.image", image_id=item.id, space=link_space),
            thumbnail=None if reason else url_for("media.thumbnail", image_id=item.id,
                                                  size=256),
            name=name, folder=(folder_of(item.path) or "/") if name in repeated else None,
            hover=hover, status=item.status, reason=reason, rank=item.rank,
            distance=item.distance, word=word, catalogued=record is not None,
            path=item.path))
    return result


def _name(item: Item, record) -> str:
    return record.title if record is not None and record.title else item.file_name
