"""The JSON API under /api/v1/."""
from __future__ import annotations

import hashlib
from urllib.parse import quote, urlencode

import numpy as np
from flask import Blueprint, jsonify, request
from sqlalchemy import select

import db.catalogue
import db.exclusions
import db.features
import db.images
import db.jobs
from db.models import Image
import db.neighbours
import db.spaces
from numerics.vectors import decode_vector
from service import counts, database, duplicates, search, serialize
from service.browsing import browse_request
from service.title_search import search_request
from service.errors import ApiError, check_image, get_image_or_error, int_param, \
    parse_id, require_grouped, space_param
from service.limits import MAX_ID, MAX_NEIGHBOURS, MAX_PAGE, MAX_RESULTS, MAX_TEXT, NEIGHBOURS, \
    PAGE, RESULTS
from service.openapi import openapi_document

bp = Blueprint("api", __name__, url_prefix="/api/v1")
bp.add_url_rule("/duplicates", "duplicates", duplicates.duplicates_json)

LOOKUP_KEYS = ("path", "name", "external_id")
LIST_CACHE = "public, max-age=300"  # lists change only when a job reruns


# Request headers that make_conditional answers to (304, 412, a range).
CONDITIONAL_HEADERS = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH", "HTTP_IF_MODIFIED_SINCE",
                       "HTTP_IF_UNMODIFIED_SINCE", "HTTP_RANGE")


def cached_json(payload, cache_control: str = LIST_CACHE):
    """Return a JSON response with an ETag of its body, 304 if the client has it."""
    response = jsonify(payload)
    response.headers["Cache-Control"] = cache_control
    response.add_etag()
    # Most requests send none of these; make_conditional would still parse and add
    # headers, a tenth of a neighbour page's CPU time.
    if any(header in request.environ for header in CONDITIONAL_HEADERS):
        return response.make_conditional(request)
    return response


def _page_url(path: str, **params) -> str:
    query = urlencode(params, quote_via=quote, safe="")
    return f"{request.script_root}{path}?{query}"


@bp.get("/images")
def images():
    """List images in id order, `limit` at a time; `next` continues after the last,
    `previous` ends before the first."""
    return _id_page("/api/v1/images")


def _id_page(path: str, name: str | None = None):
    """Return a page of images in id order (with this file name) from `cursor` (after
    it) or `before`, with its next and previous links."""
    limit = int_param("limit", PAGE, 1, MAX_PAGE)
    cursor = int_param("cursor", 0, 0, MAX_ID)
    before = int_param("before", 0, 1, MAX_ID) if "before" in request.args else None
    if before is not None and "cursor" in request.args:
        raise ApiError(400, "give at most one of cursor and before")
    connection = database.connection()
    # One more than asked for in the page's direction, one in the other: whether there
    # is a page after it and before it.
    rows = db.images.list_images(connection, cursor, limit + 1, before_id=before,
                                 name=name)
    if before is not None:
        more_before, rows = len(rows) > limit, rows[-limit:]
        more_after = bool(db.images.list_images(connection, before - 1, 1, name=name))
    else:
        more_after, rows = len(rows) > limit, rows[:limit]
        more_before = bool(cursor) and bool(db.images.list_images(
            connection, 0, 1, before_id=rows[0].id if rows else cursor + 1, name=name))
    params = {"name": name} if name is not None else {}
    next_url = (_page_url(path, **params, limit=limit, cursor=rows[-1].id)
                if more_after and rows else None)
    previous_url = (_page_url(path, **params, limit=limit, before=rows[0].id)
                    if more_before and rows else None)
    body = {"images": _with_records(connection, rows), "limit": limit, "next": next_url,
            "previous": previous_url}
    return serialize.paged(jsonify(body), next_url, previous_url)


def _with_records(connection, rows) -> list[dict]:
    """Return the JSON objects of image rows with their catalogue fields."""
    records = db.catalogue.records_of(connection, [row.id for row in rows])
    return [serialize.image(row, records.get(row.id)) for row in rows]


@bp.get("/browse")
def browse_images():
    """Return a page of the gallery (id or path order, folder, status) and its folders."""
    view = browse_request()
    path = "/api/v1/browse"
    next_url = view.url(path, after=view.next_id) if view.next_id else None
    previous_url = view.url(path, before=view.previous_id) if view.previous_id else None
    return serialize.paged(jsonify({
        "order": view.order, "folder": view.folder, "status": view.status,
        "limit": view.limit,
        "images": [serialize.image(row, view.records.get(row.id)) for row in view.page.rows],
        "subfolders": [{"name": name, "folder": f"{view.folder}/{name}".lstrip("/"),
                        "url": view.url(path, folder=f"{view.folder}/{name}".lstrip("/"),
                                        order=None)}
                       for name in view.subfolders],
        "more_subfolders": view.more_subfolders,
        "next": view.next_id, "previous": view.previous_id,
        "next_url": next_url, "previous_url": previous_url}),
        next_url, previous_url)


@bp.get("/images/lookup")
def lookup():
    """Find images by exact path (relative to IMAGE_ROOT), exact file name or the
    catalogue's external id."""
    given = {key: request.args[key] for key in LOOKUP_KEYS if key in request.args}
    if len(given) != 1:
        raise ApiError(400, "give exactly one of the query parameters "
                            + ", ".join(LOOKUP_KEYS))
    (key, text), = given.items()
    if not text or len(text) > MAX_TEXT:
        raise ApiError(400, f"{key} must be 1 to {MAX_TEXT} characters")
    int_param("limit", PAGE, 1, MAX_PAGE)  # checked whichever key is given
    if key != "name":  # paths and external ids are unique: one page says it all
        connection = database.connection()
        rows = (db.images.find_by_path(connection, text) if key == "path"
                else [row for row in [db.catalogue.find_by_external_id(connection, text)] if row])
        cursor = int_param("cursor", 0, 0, MAX_ID)
        rows = [row for row in rows if row.id > cursor]
        return jsonify({"images": _with_records(connection, rows), "next": None,
                        "previous": None})
    return _id_page("/api/v1/images/lookup", name=text)


@bp.get("/images/<image_id>")
def image(image_id: str):
    """Describe one image."""
    row = get_image_or_error(image_id)
    body = _with_records(database.connection(), [row])[0]
    # IIIF Presentation manifests, for viewers (service/manifests.py).
    manifest = f"{request.script_root}/iiif/manifests/{row.id}"
    body["manifests"] = {"image": manifest, "neighbours": f"{manifest}/neighbours"}
    return jsonify(body)


@bp.get("/images/<image_id>/neighbours")
def neighbours(image_id: str):
    """Return an image's nearest neighbours in a space, `limit` from rank `offset` + 1."""
    return _neighbours(parse_id(image_id))


@bp.get("/external/<path:external_id>/neighbours")
def external_neighbours(external_id: str):
    """Return the neighbours of the image with this catalogue id, as /neighbours does."""
    if len(external_id) > MAX_TEXT:
        raise ApiError(400, f"external_id must be at most {MAX_TEXT} characters")
    row = db.catalogue.find_by_external_id(database.connection(), external_id)
    if row is None:
        raise ApiError(404, f"no image has the external id {external_id[:200]!r}")
    return _neighbours(row.id)


def _neighbours(number: int):
    limit = int_param("limit", NEIGHBOURS, 1, MAX_NEIGHBOURS)
    offset = int_param("offset", 0, 0, MAX_NEIGHBOURS)
    space = space_param()
    connection = database.connection()
    # One more than asked for tells whether there is a next page.
    owner, rows = db.neighbours.image_and_neighbours(connection, number, offset + 1,
                                            offset + limit + 1, space)
    check_image(number, owner)
    require_grouped(number, owner.status)
    if not rows and (offset == 0 or not db.neighbours.has_neighbours(connection, number, space)):
        if db.exclusions.exclusion(connection, number) is not None:
            raise ApiError(404, f"image {number} is excluded from the grouping: it has no "
                                "neighbours", id=number, excluded=True)
        raise ApiError(404, f"image {number} has no neighbours in space {space} yet: the "
                            "grouping job has not run since its features were computed",
                       id=number)
    # The space in the next page's URL only where it was asked for: the default's URLs
    # stay as they were.
    extra = {"space": space} if "space" in request.args else {}
    path = f"/api/v1/images/{number}/neighbours"
    next_url = (_page_url(path, limit=limit, offset=offset + limit, **extra)
                if len(rows) > limit else None)
    previous_url = (_page_url(path, limit=limit, offset=max(0, offset - limit), **extra)
                    if offset else None)
    root = request.script_root
    return serialize.paged(cached_json({
        "id": number, "space": space, "offset": offset, "limit": limit,
        "neighbours": [serialize.neighbour(row, root) for row in rows[:limit]],
        "next": next_url, "previous": previous_url}), next_url, previous_url)


@bp.get("/images/search")
def search_titles():
    """Find images by the words of their catalogue titles and record ids: every word of
    `q` begins a word of the title or id, any case and accents; `limit` at a time."""
    found = search_request()
    path = "/api/v1/images/search"
    next_url, previous_url = found.next_url(path), found.previous_url(path)
    return serialize.paged(cached_json({
        "q": found.text, "words": found.words, "limit": found.limit,
        "images": [serialize.image(row, found.records.get(row.id))
                   for row in found.page.rows],
        "next": next_url, "previous": previous_url}), next_url, previous_url)


@bp.get("/spaces")
def spaces():
    """Return the spaces neighbour lists are kept in and how each stands."""
    return jsonify({"spaces": serialize.spaces(db.spaces.overview(database.connection()))})


def vector_or_error(row) -> np.ndarray:
    """Return the feature vector of an image row, or raise a 404."""
    require_grouped(row.id, row.status)
    data = db.features.features(database.connection(), row.id)
    if data is None:
        raise ApiError(404, f"image {row.id} has no features yet", id=row.id)
    return decode_vector(data)


def vector_etag(vector: np.ndarray) -> str:
    """Return an ETag that changes exactly when the vector does."""
    return hashlib.sha256(vector.tobytes()).hexdigest()[:32]


@bp.get("/images/<image_id>/features")
def features(image_id: str):
    """Return an image's 2048 feature values as a JSON list."""
    vector = vector_or_error(get_image_or_error(image_id))
    # str() of a float32 is its shortest round-trip form (0.1234 rather than
    # 0.12340000271797180): the same numbers, half the bytes.
    response = jsonify([float(str(value)) for value in vector])
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.set_etag(vector_etag(vector))
    return response.make_conditional(request)


@bp.get("/stats")
def stats():
    """Return image counts by status and the last run of each job."""
    connection = database.connection()
    by_status = counts.by_status(connection)
    return jsonify({"images": {"total": sum(by_status.values()), "by_status": by_status},
                    "jobs": {kind: serialize.job(run)
                             for kind, run in db.jobs.last_jobs(connection).items()}})


_HEALTH_QUERY = select(Image.id).limit(1)


@bp.get("/healthz")
def healthz():
    """Answer 200 when the database is reachable and has its tables."""
    database.connection().execute(_HEALTH_QUERY).first()
    return jsonify({"status": "ok"})


@bp.get("/openapi.json")
def openapi():
    """Return the OpenAPI document of this API."""
    return jsonify(openapi_document(request.script_root))


@bp.post("/search")
def search_by_image():
    """Return the stored images nearest to an uploaded JPEG or PNG, exactly."""
    limit = int_param("limit", RESULTS, 1, MAX_RESULTS)
    with_features = int_param("features", 0, 0, 1)
    space = space_param()
    result = search.search(search.read_upload(), space, limit)
    root = request.script_root
    body = {"space": result.space, "limit": limit, "grouping_run": result.job_id,
            "query": {"format": result.format, "width": result.width,
                      "height": result.height},
            "neighbours": [serialize.neighbour(row, root) for row in result.rows]}
    if with_features:
        body["query"]["features"] = [float(str(value)) for value in result.vector]
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response
