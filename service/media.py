"""Feature plots, thumbnails and the image files, with cache headers."""
from __future__ import annotations

import io
import re

from flask import Blueprint, Response, current_app, redirect, request, send_file

from service import thumbnails
from service.api import vector_etag, vector_or_error
from service.errors import ApiError, get_image_or_error
from service.plots import fingerprint_png, fingerprint_svg
from service.serialize import THUMBNAIL_SIZES

bp = Blueprint("media", __name__)
DAY = 86400


def _plot(body, mimetype: str, etag: str) -> Response:
    response = Response(body, mimetype=mimetype)
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.set_etag(etag)
    return response.make_conditional(request)


@bp.get("/images/<image_id>/fingerprint.svg")
def fingerprint_svg_view(image_id: str):
    """Return the feature vector as a 32x64 SVG heat map."""
    vector = vector_or_error(get_image_or_error(image_id))
    return _plot(fingerprint_svg(vector), "image/svg+xml", "svg-" + vector_etag(vector))


@bp.get("/images/<image_id>/fingerprint.png")
def fingerprint_png_view(image_id: str):
    """Return the feature vector as a 32x64 PNG heat map."""
    vector = vector_or_error(get_image_or_error(image_id))
    return _plot(fingerprint_png(vector), "image/png", "png-" + vector_etag(vector))


@bp.get("/images/<image_id>/thumbnail")
def thumbnail(image_id: str):
    """Return a JPEG thumbnail that fits in size x size pixels (128, 256 or 512)."""
    size_text = request.args.get("size", "256")
    if size_text not in {str(size) for size in THUMBNAIL_SIZES}:
        raise ApiError(400, f"size must be one of {', '.join(map(str, THUMBNAIL_SIZES))}, "
                            f"got {size_text[:40]!r}")
    row = get_image_or_error(image_id)
    settings = current_app.config["SETTINGS"]
    path, data, key = thumbnails.thumbnail(row, int(size_text), settings.image_root,
                                           settings.thumbnail_cache,
                                           settings.max_image_pixels)
    return send_file(path if path is not None else io.BytesIO(data), mimetype="image/jpeg",
                     etag=key, conditional=True, max_age=DAY)


@bp.get("/images/<image_id>/file")
def file(image_id: str):
    """Return the image file itself, as registered in the database; for a IIIF image a
    redirect to its full image on its server."""
    row = get_image_or_error(image_id)
    if row.source_url is not None:
        # A IIIF image: its server serves the file itself (with its own caching).
        response = redirect(row.source_url, 302)
        response.headers["Cache-Control"] = f"public, max-age={DAY}"
        return response
    path = thumbnails.image_file(row, current_app.config["SETTINGS"].image_root)
    etag = row.content_hash or f"{row.id}-{row.size}"
    return send_file(path, mimetype="image/jpeg", etag=etag, conditional=True,
                     max_age=DAY, download_name=_header_safe(row.file_name))


def _header_safe(name: str) -> str:
    """Return a file name fit for a header: Linux names may hold CR, LF and other controls."""
    return re.sub(r"[\x00-\x1f\x7f]", "_", name)
