"""Errors as JSON `{"error": ...}` for the API, plain pages for people; never a bare 500."""
from __future__ import annotations

import re

from flask import Flask, current_app, jsonify, render_template, request
from sqlalchemy import inspect
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

import db.images
from db.models import FAILED, MISSING, PENDING, POOL3, SPACE_IDS
import db.spaces
from service import database
from service.limits import MAX_ID

_DIGITS = re.compile(r"[0-9]{1,20}")


class ApiError(Exception):
    """A client-facing error with its HTTP status."""

    def __init__(self, code: int, message: str, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.extra = code, message, extra
        self.headers = headers or {}


def parse_id(text: str) -> int:
    """Return the image id in `text` or raise a 400 ApiError."""
    # ASCII digits only: int() would also accept "+5", " 5", "٥" and "1_000".
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_ID:
        raise ApiError(400, f"image id must be an integer from 1 to {MAX_ID}, "
                            f"got {text[:40]!r}")
    return int(text)


def int_param(name: str, default: int, minimum: int, maximum: int) -> int:
    """Return query parameter `name` as an int in [minimum, maximum] or raise a 400."""
    text = request.args.get(name)
    if text is None:
        return default
    if not _DIGITS.fullmatch(text) or not minimum <= int(text) <= maximum:
        raise ApiError(400, f"{name} must be an integer from {minimum} to {maximum}, "
                            f"got {text[:40]!r}")
    return int(text)


def space_param(default: str = POOL3) -> str:
    """Return the space named by query parameter `space`, or raise 400 for an unknown
    one and 404 for one the grouping job has not computed."""
    name = request.args.get("space", default)
    if name not in SPACE_IDS:
        raise ApiError(400, f"space must be one of {', '.join(SPACE_IDS)}, got {name[:40]!r}")
    if name != POOL3:
        state = db.spaces.overview(database.connection()).get(name)
        if state is None or state["dimensions"] is None:
            reason = (state or {}).get("note") or "the grouping job has not run with it yet"
            raise ApiError(404, f"space {name} is not computed: {reason}", space=name)
    return name


def check_image(image_id: int, row):
    """Return `row` (a row with a status), or raise 404 if None, 410 if its file is gone."""
    if row is None:
        raise ApiError(404, f"no image with id {image_id}", id=image_id)
    if row.status == MISSING:
        raise ApiError(410, f"the file of image {image_id} is missing from the archive",
                       id=image_id, status=row.status)
    return row


def get_image_or_error(image_id_text: str):
    """Return the image row for the id in the URL, or raise 400/404/410."""
    image_id = parse_id(image_id_text)
    return check_image(image_id, db.images.get_image(database.connection(), image_id))


def require_grouped(image_id: int, status: str) -> None:
    """Raise a 404 that says why an image has no neighbours or features."""
    if status in (PENDING, FAILED):
        raise ApiError(404, f"image {image_id} has status {status!r}: it has no "
                            "features and no neighbours", id=image_id, status=status)


def wants_html() -> bool:
    """Return whether this request should get an HTML error page."""
    if request.blueprint == "pages":
        return True
    if request.blueprint is not None or request.path.startswith(("/api/", "/image_")):
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def without_server_paths(message: str) -> str:
    """Return `message` with the service's folders cut out: no response names a path on
    the server (a library's error text may)."""
    settings = current_app.config["SETTINGS"]
    for folder in (settings.image_root, settings.thumbnail_cache, settings.search_cache,
                   settings.model_cache.parent):
        for text in {str(folder), str(folder.resolve())}:
            message = message.replace(text + "/", "").replace(text, "…")
    return message


def _respond(status: int, message: str, extra: dict | None = None):
    message = without_server_paths(message)
    if wants_html():
        return render_template("error.html", status=status, message=message), status
    return jsonify({"error": message, **(extra or {})}), status


def _database_message() -> str:
    try:
        has_tables = inspect(current_app.extensions["db_engine"]).has_table("images")
    except DBAPIError:
        return "the database is not reachable"
    if not has_tables:
        return ("the database has no tables yet: run create_image_features.py "
                "(it creates the schema)")
    return "the database is not available"


def init_app(app: Flask) -> None:
    """Register the error handlers."""

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        body, status = _respond(error.status, error.message, error.extra)
        return body, status, error.headers

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        response = _respond(error.code or 500, error.description or error.name)
        if error.code == 405 and error.valid_methods:
            body, status = response
            return body, status, {"Allow": ", ".join(error.valid_methods)}
        return response

    @app.errorhandler(DBAPIError)  # unreachable, no tables, connection lost
    def _database_error(error):
        current_app.logger.warning("database error: %s", error)
        database.discard_connection()
        return _respond(503, _database_message())

    @app.errorhandler(Exception)
    def _unexpected(error):
        current_app.logger.exception("unexpected error")
        return _respond(500, "internal error; the service log has the details")
