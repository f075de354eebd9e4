"""The title_words table: the words of each image's catalogue title and record id, for
the word-anywhere search (GET /api/v1/images/search and the search page).

A word is a run of letters and digits, case-folded and without accents ("Édouard" ->
"edouard", "Straße" -> "strasse"), cut to WORD_LENGTH characters. An image matches a
query when every word of the query begins one of its words. Rows are keyed by
(word, image_id): the words a query word begins are one range of the key, walked in
order, so a page costs LIMIT rows and a few look-ups whatever its number (keyset paging
from the last image of the previous page). Portable by design: the same rows, ranges and
order on SQLite and MariaDB, unlike MariaDB's FULLTEXT and SQLite's FTS5, which split,
fold and rank differently and cannot be paged by key.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from sqlalchemy import and_, delete, exists, func, insert, or_, select
from sqlalchemy.engine import Connection

from db.chunks import chunks
from db.images import IMAGE_COLUMNS
from db.models import WORD_LENGTH, Image, TitleWord

MAX_QUERY_WORDS = 8  # a longer query is refused: each word is a look-up per result
_WORD = re.compile(r"[^\W_]+")


def words(text: str | None) -> list[str]:
    """Return the distinct search words of a text, in order of first appearance."""
    if not text:
        return []
    # Case-folded on both sides of the decomposition: each can make what the other
    # must fold ("ℌ" decomposes to "H"; "İ" folds to "i" and a combining dot).
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    return list(dict.fromkeys(word[:WORD_LENGTH] for word in _WORD.findall(plain)))


def record_words(external_id: str | None, title: str | None) -> set[str]:
    """Return the words an image with this record id and title is found by."""
    return set(words(external_id)) | set(words(title))


def replace_words(connection: Connection, records: dict[int, tuple]) -> None:
    """Store the words of these images' records, (external_id, title) by image id,
    in place of the ones they had; (None, None) removes an image's words."""
    for chunk in chunks(sorted(records)):
        connection.execute(delete(TitleWord).where(TitleWord.image_id.in_(chunk)))
    rows = [{"word": word, "image_id": image_id}
            for image_id, (external_id, title) in records.items()
            for word in sorted(record_words(external_id, title))]
    for start in range(0, len(rows), 10_000):
        connection.execute(insert(TitleWord), rows[start:start + 10_000])


def _after_prefix(prefix: str) -> str:
    """Return the least string above every string that begins with `prefix`."""
    following = ord(prefix[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # no surrogates in stored text
        following = 0xE000
    return prefix[:-1] + chr(following)


def _begins(column, prefix: str):
    # A range rather than LIKE: it is an index range on both databases (SQLite's LIKE is
    # case-insensitive and uses no index), and needs no escaping of % and _.
    return and_(column >= prefix, column < _after_prefix(prefix))


@dataclass
class Page:
    rows: list
    has_previous: bool
    has_next: bool


def _driver(query_words: list[str]) -> str:
    # The longest query word drives the walk: most likely the fewest rows to read.
    return max(query_words, key=len)


def _conditions(query_words: list[str]):
    driver = _driver(query_words)
    walked, other = TitleWord.__table__.alias("walked"), TitleWord.__table__.alias("other")
    conditions = [_begins(walked.c.word, driver),
                  # Each image once: at the least of its words the driver begins.
                  ~exists().where(other.c.image_id == walked.c.image_id,
                                  other.c.word >= driver, other.c.word < walked.c.word)]
    for word in query_words:
        if word != driver:
            also = TitleWord.__table__.alias()
            # A scalar subquery, not EXISTS: MariaDB turns EXISTS into a semi-join that
            # materialises every image the word begins a word of (1 s at 1,000,000
            # images), where this is one index look-up per row walked.
            conditions.append(select(also.c.image_id)
                              .where(also.c.image_id == walked.c.image_id,
                                     _begins(also.c.word, word))
                              .limit(1).scalar_subquery().is_not(None))
    return walked, conditions


def anchor_of(connection: Connection, query_words: list[str], image_id: int):
    """Return the place of an image among the query's results, (word, id), or None
    where it is no result."""
    driver = _driver(query_words)
    word = connection.execute(select(func.min(TitleWord.word))
                              .where(TitleWord.image_id == image_id,
                                     _begins(TitleWord.word, driver))).scalar()
    return None if word is None else (word, image_id)


def _beyond(walked, anchor, forward: bool):
    word, image_id = anchor
    if forward:
        return and_(walked.c.word >= word,
                    or_(walked.c.word > word, walked.c.image_id > image_id))
    return and_(walked.c.word <= word, or_(walked.c.word < word, walked.c.image_id < image_id))


def _fetch(connection, query_words, anchor, forward: bool, limit: int) -> list:
    walked, conditions = _conditions(query_words)
    if anchor is not None:
        conditions.append(_beyond(walked, anchor, forward))
    order = [walked.c.word, walked.c.image_id]
    query = (select(walked.c.word.label("matched_word"), *IMAGE_COLUMNS)
             .select_from(walked.join(Image, Image.id == walked.c.image_id))
             .where(*conditions)
             .order_by(*(order if forward else [column.desc() for column in order]))
             .limit(limit))
    rows = connection.execute(query).all()
    return rows if forward else rows[::-1]


def search(connection: Connection, query_words: list[str], *, after=None, before=None,
           limit: int = 100) -> Page:
    """Return a page of the images every query word begins a word of (in the order of
    the word the longest query word begins, then id): the first, the one after the
    anchor `after` or the one before the anchor `before` (see anchor_of)."""
    if before is not None:
        rows = _fetch(connection, query_words, before, False, limit + 1)
        if len(rows) > limit:
            return Page(rows[1:], True, True)
        after = None  # back at the start: the first page, full
    rows = _fetch(connection, query_words, after, True, limit + 1)
    has_previous = after is not None and bool(_fetch(
        connection, query_words, _place(rows[0]) if rows else after, False, 1))
    return Page(rows[:limit], has_previous, len(rows) > limit)


def _place(row) -> tuple:
    return row.matched_word, row.id
