"""JSON shapes of images, neighbours and job runs, with their links."""
from __future__ import annotations

import json
from datetime import datetime

from urllib.parse import urlsplit

from flask import request

THUMBNAIL_SIZES = (128, 256, 512)
IIIF_PREFIX = "/iiif/3"  # the IIIF Image API 3.0 service of image N is IIIF_PREFIX/N


def timestamp(value: datetime | None) -> str | None:
    """Return an ISO 8601 UTC timestamp (the database stores naive UTC)."""
    return None if value is None else value.isoformat(timespec="seconds") + "Z"


def links(image_id: int) -> dict[str, str]:
    """Return the URLs of everything the service offers about one image."""
    # Plain formatting instead of url_for: a neighbour list builds hundreds of these.
    root = request.script_root
    api = f"{root}/api/v1/images/{image_id}"
    page = f"{root}/images/{image_id}"
    return {"self": api, "neighbours": f"{api}/neighbours", "features": f"{api}/features",
            "page": page, "file": f"{page}/file", "thumbnail": f"{page}/thumbnail?size=256",
            "fingerprint_svg": f"{page}/fingerprint.svg",
            "fingerprint_png": f"{page}/fingerprint.png",
            "iiif": f"{root}{IIIF_PREFIX}/{image_id}"}


def image(row, record=None) -> dict:
    """Return the JSON object of one image row, with its catalogue record's fields."""
    return {"id": row.id, "path": row.path, "file_name": row.file_name, "size": row.size,
            "width": row.width, "height": row.height, "status": row.status,
            "error": row.error, "content_hash": row.content_hash,
            "updated_at": timestamp(row.updated_at), "excluded": bool(row.excluded),
            "links": links(row.id), "iiif": iiif_fields(row),
            **catalogue_fields(record)}


def iiif_fields(row) -> dict | None:
    """Return where a IIIF image comes from (import_iiif.py); None for a file."""
    if row.source_url is None:
        return None
    return {"manifest": row.manifest_id, "canvas": row.canvas_id,
            "image_service": row.iiif_service, "image": row.source_url}


def catalogue_fields(record) -> dict:
    """Return the catalogue's fields of an image (all None where it has no record)."""
    if record is None:
        return {"external_id": None, "title": None, "url": None}
    return {"external_id": record.external_id, "title": record.title, "url": record.url}


def extra_fields(record) -> dict:
    """Return the catalogue's other columns of a record ({} where there are none)."""
    try:
        extra = json.loads(record.extra) if record is not None and record.extra else {}
    except ValueError:
        return {}
    return extra if isinstance(extra, dict) else {}


def safe_url(url: str | None) -> str | None:
    """Return the URL if a page may link to it (http or https), else None."""
    # The import accepts no other scheme; checked again where a link is made, so that a
    # record written some other way cannot put javascript: into a page.
    try:
        scheme = urlsplit(url).scheme.lower() if url else ""
    except ValueError:
        return None
    return url if scheme in ("http", "https") else None


def neighbour(row, root: str) -> dict:
    """Return the JSON object of one neighbour-list entry; `root` is the script root."""
    # The caller looks the root up once per list, and each field of the row is read
    # once: per entry, both cost more than building the entry.
    image_id = row.id
    page = f"{root}/images/{image_id}"
    return {"rank": row.rank, "id": image_id, "distance": row.distance,
            "file_name": row.file_name, "external_id": row.external_id, "title": row.title,
            "links": {"self": f"{root}/api/v1/images/{image_id}", "page": page,
                      "thumbnail": f"{page}/thumbnail?size=256",
                      "iiif": f"{root}{IIIF_PREFIX}/{image_id}"}}


def paged(response, next_url: str | None, previous_url: str | None = None):
    """Add the Link header (RFC 8288) of a page's neighbours to its response: the same
    URLs as the body's `next` and `previous`."""
    links = [f'<{url}>; rel="{rel}"' for rel, url in (("next", next_url),
                                                       ("prev", previous_url)) if url]
    if links:
        response.headers["Link"] = ", ".join(links)
    return response


def job(run: dict | None) -> dict | None:
    """Return the JSON object of a job run."""
    if run is None:
        return None
    counts = run["counts"]
    return {**run, "started_at": timestamp(run["started_at"]),
            "finished_at": timestamp(run["finished_at"]),
            "counts": counts if isinstance(counts, dict) else None}


SPACE_DESCRIPTIONS = {
    "pool3": "the original distance: Euclidean on the 2048 pool_3 values, as the "
             "replaced system computed it",
    "whitened": "improved similarity: the same vectors in a space learned from the "
                "collection (signed square root, PCA whitening, L2), Euclidean there",
    "augmented": "improved similarity, further: each whitened vector averaged with those "
                 "of its nearest neighbours, weighted by similarity (database-side "
                 "augmentation), Euclidean there",
}


def spaces(stored: dict[str, dict]) -> list[dict]:
    """Return the JSON objects of every space, computed or not."""
    result = []
    for name, description in SPACE_DESCRIPTIONS.items():
        state = stored.get(name) or {}
        computed = state.get("dimensions") is not None
        result.append({
            "name": name, "description": description, "computed": computed,
            "dimensions": state.get("dimensions"), "lists": state.get("lists", 0),
            "learned_from": state.get("learned_from"),
            "learned_at": timestamp(state.get("learned_at")),
            "note": None if computed else (state.get("note")
                                           or "the grouping job has not run with it yet")})
    return result
