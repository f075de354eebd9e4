"""What the gallery page and its JSON twin share: parameters, the page, its links."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from flask import request

import db.browse
import db.catalogue
from db.models import STATUSES
from service import database
from service.errors import ApiError, int_param
from service.limits import BROWSE_LIMIT, MAX_BROWSE_LIMIT, MAX_ID, MAX_TEXT



@dataclass
class Browse:
    order: str
    folder: str
    status: str | None
    limit: int
    page: db.browse.Page
    subfolders: list[str]
    more_subfolders: bool
    records: dict

    def params(self, **changes) -> dict:
        """Return the query parameters of this view, with `changes` (None drops one)."""
        params = {"order": self.order, "folder": self.folder or None,
                  "status": self.status, "limit": self.limit if self.limit != BROWSE_LIMIT
                  else None, **changes}
        return {k: v for k, v in params.items() if v is not None}

    def url(self, path: str, **changes) -> str:
        query = urlencode(self.params(**changes))
        return f"{request.script_root}{path}" + (f"?{query}" if query else "")

    @property
    def next_id(self) -> int | None:
        return self.page.rows[-1].id if self.page.has_next and self.page.rows else None

    @property
    def previous_id(self) -> int | None:
        return self.page.rows[0].id if self.page.has_previous and self.page.rows else None


def _choice(name: str, choices, default):
    value = request.args.get(name, default)
    if value is not None and value not in choices:
        raise ApiError(400, f"{name} must be one of {', '.join(choices)}, got {value[:40]!r}")
    return value


def folder_param() -> str:
    """Return the folder asked for, without leading or trailing slashes ('' is the top)."""
    folder = request.args.get("folder", "").strip("/")
    if len(folder) > MAX_TEXT:
        raise ApiError(400, f"folder must be at most {MAX_TEXT} characters")
    if "\x00" in folder or "//" in folder:
        raise ApiError(400, "folder must be a path relative to IMAGE_ROOT, like a/b")
    return folder


def browse_request() -> Browse:
    """Return the page the request asks for; raise a 400 ApiError for a bad parameter."""
    folder = folder_param()
    # A folder is shown in path order only: an index range whatever the page. No index
    # serves id order under any path prefix, so it would read the whole folder per page.
    order = _choice("order", db.browse.ORDERS, "path" if folder else "id")
    if folder and order != "path":
        raise ApiError(400, "within a folder the gallery is in path order only: give "
                            "order=path or leave order out")
    status = _choice("status", STATUSES, None)
    limit = int_param("limit", BROWSE_LIMIT, 1, MAX_BROWSE_LIMIT)
    after_id = int_param("after", 0, 1, MAX_ID) if "after" in request.args else None
    before_id = int_param("before", 0, 1, MAX_ID) if "before" in request.args else None
    if after_id is not None and before_id is not None:
        raise ApiError(400, "give at most one of after and before")
    connection = database.connection()
    anchors = {}
    for name, image_id in (("after", after_id), ("before", before_id)):
        if image_id is None:
            continue
        if order == "id":  # any id marks a place in id order
            anchors[name] = db.browse.Anchor(image_id, b"")
            continue
        anchors[name] = db.browse.anchor_of(connection, image_id)
        if anchors[name] is None:
            raise ApiError(404, f"{name}: there is no image with id {image_id} to page "
                                "from in path order", id=image_id)
    page = db.browse.page(connection, order=order, folder=folder, status=status,
                       limit=limit, **anchors)
    names, more = db.browse.subfolders(connection, folder)
    records = db.catalogue.records_of(connection, [row.id for row in page.rows])
    return Browse(order, folder, status, limit, page, names, more, records)
