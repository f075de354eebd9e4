"""What the title search's page and its JSON twin share: the query, the page, its links."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode

from flask import request

import db.catalogue
import db.title_words
from service import database
from service.errors import ApiError, int_param
from service.limits import MAX_ID, MAX_PAGE, MAX_TEXT, PAGE


@dataclass
class TitleSearch:
    text: str
    words: list[str]
    limit: int
    page: db.title_words.Page
    records: dict

    def url(self, path: str, **changes) -> str:
        """Return the URL of this search at `path`, with `changes` to its parameters."""
        params = {"q": self.text, "limit": self.limit if self.limit != PAGE else None,
                  **changes}
        query = urlencode({k: v for k, v in params.items() if v is not None},
                          quote_via=quote, safe="")
        return f"{request.script_root}{path}?{query}"

    def next_url(self, path: str) -> str | None:
        rows = self.page.rows
        return self.url(path, after=rows[-1].id) if self.page.has_next and rows else None

    def previous_url(self, path: str) -> str | None:
        rows = self.page.rows
        return self.url(path, before=rows[0].id) if self.page.has_previous and rows else None


def search_request(limit: int | None = None) -> TitleSearch:
    """Return the page of results the request asks for (`q`, `limit`, `after` or
    `before`); raise a 400 ApiError for a bad parameter, 404 for an anchor that is no
    result."""
    text = request.args.get("q", "").strip()
    if not text or len(text) > MAX_TEXT:
        raise ApiError(400, f"q must be 1 to {MAX_TEXT} characters")
    words = db.title_words.words(text)
    if not words:
        raise ApiError(400, "q has no word to search for: give letters or digits")
    if len(words) > db.title_words.MAX_QUERY_WORDS:
        raise ApiError(400, f"q has {len(words)} words; at most "
                            f"{db.title_words.MAX_QUERY_WORDS} are searched for")
    limit = limit or int_param("limit", PAGE, 1, MAX_PAGE)
    if "after" in request.args and "before" in request.args:
        raise ApiError(400, "give at most one of after and before")
    anchors = {}
    connection = database.connection()
    for name in ("after", "before"):
        if name in request.args:
            image_id = int_param(name, 0, 1, MAX_ID)
            anchors[name] = db.title_words.anchor_of(connection, words, image_id)
            if anchors[name] is None:
                raise ApiError(404, f"{name}: image {image_id} is not among the results "
                                    "of this search", id=image_id)
    page = db.title_words.search(connection, words, limit=limit, **anchors)
    records = db.catalogue.records_of(connection, [row.id for row in page.rows])
    return TitleSearch(text, words, limit, page, records)
