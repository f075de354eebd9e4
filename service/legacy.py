"""The original endpoints, with their paths and JSON shapes, for existing clients."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

import db.neighbours
from service import counts, database
from service.api import cached_json, healthz, vector_etag, vector_or_error
from service.errors import ApiError, check_image, get_image_or_error, parse_id, \
    require_grouped
from service.plots import fingerprint_svg

bp = Blueprint("legacy", __name__)
bp.add_url_rule("/healthz", view_func=healthz)


@bp.get("/image_count")
def image_count():
    """Return the number of images with current features, as a bare integer."""
    return jsonify(counts.ok(database.connection()))


@bp.get("/image_name/<image_id>")
def image_name(image_id: str):
    """Return `[file_name]`."""
    return jsonify([get_image_or_error(image_id).file_name])


@bp.get("/image_name_and_neighbours/<image_id>")
def image_name_and_neighbours(image_id: str):
    """Return `[file_name, [{"id": ..., "distance": ...}, ...]]` with every neighbour."""
    number = parse_id(image_id)
    owner, rows = db.neighbours.image_and_neighbour_ids(database.connection(), number)
    check_image(number, owner)
    require_grouped(number, owner.status)
    if not rows:
        raise ApiError(404, f"image {number} has no neighbours yet", id=number)
    return cached_json([owner.owner_file_name,
                        [{"id": n.id, "distance": n.distance} for n in rows]])


@bp.get("/image_fingerprint/<image_id>")
def image_fingerprint(image_id: str):
    """Return the original SVG plot: the vector as a 46x46 grid, wrapped around."""
    vector = vector_or_error(get_image_or_error(image_id))
    response = Response(fingerprint_svg(vector, rows=46, columns=46, wrap=True),
                        mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.set_etag("legacy-" + vector_etag(vector))
    return response.make_conditional(request)
