"""IIIF Presentation API 3.0 manifests: one per image, and one of an image's neighbours in
a space, so that a IIIF viewer (Mirador, Universal Viewer) opens them directly."""
from __future__ import annotations

from flask import Blueprint, current_app, request

import db.catalogue
import db.images
import db.neighbours
from service import database, serialize
from service.api import cached_json
from service.errors import ApiError, get_image_or_error, int_param, require_grouped, \
    space_param
from service.iiif_image import PROFILE, service_id, upright_size
from service.limits import MAX_NEIGHBOURS, NEIGHBOURS

bp = Blueprint("manifests", __name__, url_prefix="/iiif/manifests")

CONTEXT = "http://iiif.io/api/presentation/3/context.json"


def manifest_url(image_id: int) -> str:
    """Return the URL of an image's manifest."""
    return f"{request.host_url.rstrip('/')}{request.script_root}/iiif/manifests/{image_id}"


def _text(value: str) -> dict:
    return {"none": [value]}


def _entry(label: str, value) -> dict:
    return {"label": {"en": [label]}, "value": _text(str(value))}


def _label(row, record) -> str:
    return record.title if record is not None and record.title else row.file_name


def _metadata(row, record) -> list[dict]:
    """Return the catalogue's fields of an image as manifest metadata."""
    entries = [_entry("File", row.path)]
    if record is not None:
        if record.external_id:
            entries.append(_entry("Catalogue id", record.external_id))
        if record.title:
            entries.append(_entry("Title", record.title))
        for name, value in sorted(serialize.extra_fields(record).items()):
            entries.append(_entry(name, value))
    return entries


def _homepage(row, record) -> list[dict]:
    """Return the catalogue record's page (where it has one) and the image's page here."""
    pages = []
    record_url = serialize.safe_url(record.url if record is not None else None)
    if record_url:
        pages.append({"id": record_url, "type": "Text", "format": "text/html",
                      "label": {"en": ["Catalogue record"]}})
    pages.append({"id": f"{request.host_url.rstrip('/')}{request.script_root}/images/{row.id}",
                  "type": "Text", "format": "text/html",
                  "label": {"en": ["Image and its neighbours"]}})
    return pages


def canvas(base: str, row, record, size: tuple[int, int], metadata: list[dict]) -> dict:
    """Return a canvas of `row` in the manifest at `base`, painted by its image service."""
    width, height = size
    canvas_id = f"{base}/canvas/{row.id}"
    service = service_id(row.id)
    thumb_width = max(1, round(width * min(1.0, 256 / max(width, height))))
    return {
        "id": canvas_id, "type": "Canvas", "label": _text(_label(row, record)),
        "width": width, "height": height, "metadata": metadata,
        "thumbnail": [{"id": f"{service}/full/{thumb_width},/0/default.jpg", "type": "Image",
                       "format": "image/jpeg"}],
        "items": [{
            "id": f"{canvas_id}/page", "type": "AnnotationPage",
            "items": [{
                "id": f"{canvas_id}/page/image", "type": "Annotation",
                "motivation": "painting", "target": canvas_id,
                "body": {"id": f"{service}/full/max/0/default.jpg", "type": "Image",
                         "format": "image/jpeg", "width": width, "height": height,
                         "service": [{"id": service, "type": "ImageService3",
                                      "profile": PROFILE}]}}]}]}


@bp.get("/<image_id>")
def image_manifest(image_id: str):
    """Return the manifest of one image: one canvas, its catalogue fields."""
    row = get_image_or_error(image_id)
    record = db.catalogue.records_of(database.connection(), [row.id]).get(row.id)
    base = manifest_url(row.id)
    body = {"@context": CONTEXT, "id": base, "type": "Manifest",
            "label": _text(_label(row, record)), "metadata": _metadata(row, record),
            "homepage": _homepage(row, record),
            "items": [canvas(base, row, record, upright_size(row), _metadata(row, record))]}
    return _respond(body)


@bp.get("/<image_id>/neighbours")
def neighbours_manifest(image_id: str):
    """Return a manifest of an image's nearest neighbours in a space, nearest first, the
    distance in each canvas's metadata."""
    row = get_image_or_error(image_id)
    require_grouped(row.id, row.status)
    limit = int_param("limit", NEIGHBOURS, 1, MAX_NEIGHBOURS)
    space = space_param()
    connection = database.connection()
    _, entries = db.neighbours.image_and_neighbours(connection, row.id, 1, limit, space)
    if not entries:
        raise ApiError(404, f"image {row.id} has no neighbours in space {space}",
                       id=row.id)
    rows = db.images.get_images(connection, [entry.id for entry in entries])
    records = db.catalogue.records_of(connection, [row.id, *rows])
    base = f"{manifest_url(row.id)}/neighbours/{space}"
    items = []
    for entry in entries:
        neighbour = rows.get(entry.id)
        try:
            size = upright_size(neighbour)
        except ApiError as error:  # gone or unreadable since the list was made
            current_app.logger.info("neighbour %s left out of a manifest: %s", entry.id,
                                    error.message)
            continue
        record = records.get(entry.id)
        metadata = [_entry("Rank", entry.rank), _entry("Distance", f"{entry.distance:.4f}"),
                    _entry("Space", space), *_metadata(neighbour, record)]
        items.append(canvas(base, neighbour, record, size, metadata))
    title = _label(row, records.get(row.id))
    body = {"@context": CONTEXT, "id": base, "type": "Manifest",
            "label": {"en": [f"Images similar to {title}"]},
            "summary": {"en": [f"The {len(entries)} nearest neighbours of image {row.id} in "
                               f"space {space}, nearest first."]},
            "metadata": [_entry("Similar to", title), _entry("Space", space)],
            "homepage": _homepage(row, records.get(row.id)),
            "items": items}
    return _respond(body)


def _respond(body: dict):
    response = cached_json(body)
    # The manifest's own media type for clients that ask for it.
    if request.accept_mimetypes.best_match(["application/json", "application/ld+json"]) \
            == "application/ld+json":
        response.headers["Content-Type"] = f'application/ld+json;profile="{CONTEXT}"'
    response.vary.add("Accept")
    return response
