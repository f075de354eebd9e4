"""HTML pages for archivists: home, search, one image with its neighbours."""
from __future__ import annotations

import base64
import io

from flask import Blueprint, current_app, redirect, render_template, request, url_for

import db.browse
import db.catalogue
import db.exclusions
import db.features
import db.images
import db.jobs
from db.models import MISSING, OK, POOL3, SPACE_IDS, STATUSES
import db.neighbours
import db.spaces
from service import database, duplicates, search as image_search, serialize
from service.browsing import browse_request
from service.errors import ApiError, parse_id
from service.limits import MAX_ID, MAX_TEXT, RESULTS

bp = Blueprint("pages", __name__)
bp.add_url_rule("/duplicates", "duplicates", duplicates.duplicates_page)

FIRST_NEIGHBOURS = 20  # shown at once; the page fetches more on demand
SEARCH_LIMIT = 50
SPACE_LABELS = {"pool3": "Original similarity", "whitened": "Improved similarity"}


@bp.get("/")
def home():
    """Show counts, the last job runs, a search box and a random image link."""
    connection = database.connection()
    by_status = db.images.count_by_status(connection)
    jobs = {kind: serialize.job(run) for kind, run in db.jobs.last_jobs(connection).items()}
    first = db.images.next_id(connection, 0)
    return render_template("index.html", by_status=by_status,
                           total=sum(by_status.values()), jobs=jobs, first=first)


@bp.get("/random")
def random_image():
    """Redirect to a random image with status ok."""
    image_id = db.images.random_ok_id(database.connection())
    if image_id is None:
        raise ApiError(404, "there are no processed images yet")
    return redirect(url_for("pages.image", image_id=image_id), code=302)


@bp.get("/search")
def search():
    """Find images by id, exact path, exact file name or file-name prefix."""
    query = request.args.get("q", "").strip()
    if not query:
        return redirect(url_for("pages.home"))
    if len(query) > MAX_TEXT:
        raise ApiError(400, f"the search text is longer than {MAX_TEXT} characters")
    connection = database.connection()
    if query.isascii() and query.isdigit() and len(query) < 20 and 1 <= int(query) <= MAX_ID:
        if db.images.get_image(connection, int(query)) is not None:
            return redirect(url_for("pages.image", image_id=int(query)))
    by_path = db.images.find_by_path(connection, query)
    if by_path:
        return redirect(url_for("pages.image", image_id=by_path[0].id))
    by_external_id = db.catalogue.find_by_external_id(connection, query)
    if by_external_id is not None:
        return redirect(url_for("pages.image", image_id=by_external_id.id))
    results, seen = [], set()
    for found in (db.images.find_by_name(connection, query, 0, SEARCH_LIMIT),
                  db.images.find_by_name_prefix(connection, query, SEARCH_LIMIT),
                  db.catalogue.find_by_title_prefix(connection, query, SEARCH_LIMIT)):
        results += [row for row in found if row.id not in seen]
        seen.update(row.id for row in found)
    results = results[:SEARCH_LIMIT]
    if len(results) == 1:
        return redirect(url_for("pages.image", image_id=results[0].id))
    return render_template("search.html", query=query, results=results,
                           records=db.catalogue.records_of(connection, seen),
                           limit=SEARCH_LIMIT), 200 if results else 404


@bp.get("/browse")
def gallery():
    """Show the collection as thumbnails, a page at a time, with its folder tree."""
    view = browse_request()
    return render_template("browse.html", view=view, statuses=STATUSES,
                           orders=db.browse.ORDERS)


@bp.get("/images/<image_id>")
def image(image_id: str):
    """Show an image, its fingerprint and its nearest neighbours in one space."""
    number = parse_id(image_id)
    asked = request.args.get("space")
    if asked is not None and asked not in SPACE_IDS:
        raise ApiError(400, f"space must be one of {', '.join(SPACE_IDS)}")
    connection = database.connection()
    row = db.images.get_image(connection, number)
    if row is None:
        raise ApiError(404, f"There is no image with id {number}.")
    spaces = serialize.spaces(db.spaces.overview(connection))
    computed = {space["name"] for space in spaces if space["computed"]}
    preferred = current_app.config["SETTINGS"].page_space
    space = asked or (preferred if preferred in computed else POOL3)
    neighbours = []
    if row.status == OK and space in computed:
        _, neighbours = db.neighbours.image_and_neighbours(connection, row.id, 1, FIRST_NEIGHBOURS,
                                                  space)
    has_features = row.status == OK and db.features.has_features(connection, row.id)
    records = db.catalogue.records_of(connection, [row.id] + [n.id for n in neighbours])
    record = records.get(row.id)
    extra = serialize.extra_fields(record)
    status = 410 if row.status == MISSING else 200
    return render_template("image.html", image=row, neighbours=neighbours,
                           has_features=has_features, space=space, spaces=spaces,
                           exclusion=db.exclusions.exclusion(connection, row.id),
                           space_labels=SPACE_LABELS, computed=space in computed,
                           previous_id=db.images.previous_id(connection, row.id),
                           next_id=db.images.next_id(connection, row.id),
                           page_size=FIRST_NEIGHBOURS, record=record,
                           record_url=serialize.safe_url(record.url if record else None),
                           extra=extra, records=records), status


PREVIEW_SIZE = 384  # pixels of the query's preview on the results page


def _search_spaces():
    """Return (spaces, the one to preselect): PAGE_SPACE where computed, else pool3."""
    spaces = serialize.spaces(db.spaces.overview(database.connection()))
    computed = [space["name"] for space in spaces if space["computed"]]
    preferred = current_app.config["SETTINGS"].page_space
    return spaces, (preferred if preferred in computed else POOL3)


@bp.route("/search-by-image", methods=["GET", "POST"])
def search_by_image():
    """Show the upload form; on a post, the nearest stored images beside the query."""
    spaces, default_space = _search_spaces()
    context = {"spaces": spaces, "space_labels": SPACE_LABELS, "space": default_space,
               "limit": RESULTS, "result": None, "error": None,
               "preview": None, "accept": ",".join(image_search.UPLOAD_TYPES)}
    if request.method == "GET":
        return render_template("search_by_image.html", **context)
    space = request.form.get("space", default_space)
    context["space"] = space
    try:
        if space not in SPACE_IDS:
            raise ApiError(400, f"space must be one of {', '.join(SPACE_IDS)}")
        upload = image_search.read_upload()
        result = image_search.search(upload, space, RESULTS)
    except ApiError as error:
        context["error"] = error.message
        return render_template("search_by_image.html", **context), error.status, \
            error.headers
    context.update(result=result, preview=_preview(upload.data))
    return render_template("search_by_image.html", **context)


def _preview(data: bytes) -> str | None:
    """Return a small JPEG of the upload as a data: URL (nothing is stored), or None."""
    from PIL import Image as PILImage, UnidentifiedImageError
    try:
        with PILImage.open(io.BytesIO(data)) as picture:
            # The pixel cap was checked before the search decoded it.
            picture.draft("RGB", (PREVIEW_SIZE, PREVIEW_SIZE))
            picture = picture.convert("RGB")
            picture.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
            buffer = io.BytesIO()
            picture.save(buffer, "JPEG", quality=85)
    except (OSError, ValueError, UnidentifiedImageError, PILImage.DecompressionBombError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
