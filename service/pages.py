"""HTML pages for archivists: home, search, one image with its neighbours."""
from __future__ import annotations

import base64
import io
from collections import Counter

from flask import Blueprint, current_app, redirect, render_template, request, url_for

import db.browse
import db.catalogue
import db.exclusions
import db.features
import db.images
import db.jobs
from db.models import AUGMENTED, MISSING, OK, POOL3, SPACE_IDS, STATUSES, WHITENED
import db.neighbours
import db.spaces
from runtime import distances
from service import counts, database, duplicates, search as image_search, serialize
from service.browsing import browse_request
from service.cards import Item, cards, folder_of, kept_space, unavailable_reason
from service.errors import ApiError, parse_id
from service.title_search import search_request
from service.limits import MAX_ID, MAX_NEIGHBOURS, MAX_TEXT, RESULTS

bp = Blueprint("pages", __name__)
bp.add_url_rule("/duplicates", "duplicates", duplicates.duplicates_page)

FIRST_NEIGHBOURS = 20  # shown at once; "Show more" shows the next as many
SEARCH_LIMIT = 50


@bp.app_template_global()
def space_label(space: str) -> str:
    """What the pages call a space."""
    return distances.label(space)


@bp.app_context_processor
def _kept_space() -> dict:
    # The space being viewed, carried by the header's links and forms.
    return {"kept_space": kept_space()}


# The spaces PAGE_SPACE falls back through, best first.
BEST_FIRST = (AUGMENTED, WHITENED, POOL3)


def improved_space(computed) -> str:
    """Return the space the pages show first and call improved similarity: PAGE_SPACE
    (`best`: the first of BEST_FIRST) if computed, else the next computed one of
    BEST_FIRST."""
    preferred = current_app.config["SETTINGS"].page_space
    start = 0 if preferred == "best" else BEST_FIRST.index(preferred)
    return next((space for space in BEST_FIRST[start:] if space in computed), POOL3)


@bp.get("/")
def home():
    """Show counts, the last job runs, a search box and a random image link."""
    connection = database.connection()
    by_status = counts.by_status(connection)
    jobs = {kind: serialize.job(run) for kind, run in db.jobs.last_jobs(connection).items()}
    # The first image with a picture and neighbours: not a failed or empty file.
    first_ok = db.browse.page(connection, order="id", status=OK, limit=1).rows
    first = first_ok[0].id if first_ok else None
    return render_template("index.html", by_status=by_status,
                           total=sum(by_status.values()), jobs=jobs, first=first)


@bp.get("/random")
def random_image():
    """Redirect to a random image with status ok."""
    image_id = db.images.random_ok_id(database.connection())
    if image_id is None:
        raise ApiError(404, "there are no processed images yet")
    return redirect(url_for("pages.image", image_id=image_id, space=kept_space()),
                    code=302)


@bp.get("/search")
def search():
    """Find images by id, exact path or record id, by the words of catalogue titles and
    record ids (the API's /api/v1/images/search), and by file name or its beginning."""
    query = request.args.get("q", "").strip()
    if not query:
        return redirect(url_for("pages.home"))
    if len(query) > MAX_TEXT:
        raise ApiError(400, f"the search text is longer than {MAX_TEXT} characters")
    connection = database.connection()
    if query.isascii() and query.isdigit() and len(query) < 20 and 1 <= int(query) <= MAX_ID:
        if db.images.get_image(connection, int(query)) is not None:
            return redirect(url_for("pages.image", image_id=int(query), space=kept_space()))
    by_path = db.images.find_by_path(connection, query)
    if by_path:
        return redirect(url_for("pages.image", image_id=by_path[0].id, space=kept_space()))
    by_external_id = db.catalogue.find_by_external_id(connection, query)
    if by_external_id is not None:
        return redirect(url_for("pages.image", image_id=by_external_id.id,
                                space=kept_space()))
    try:
        titles = search_request(SEARCH_LIMIT)
    except ApiError as error:
        if error.status != 400:  # q without words: only file names can match
            raise
        titles = None
    names, seen = [], set()
    for found in (db.images.find_by_name(connection, query, 0, SEARCH_LIMIT),
                  db.images.find_by_name_prefix(connection, query, SEARCH_LIMIT)):
        names += [row for row in found if row.id not in seen]
        seen.update(row.id for row in found)
    names = names[:SEARCH_LIMIT]
    results = titles.page.rows if titles else []
    paging = titles is not None and (titles.page.has_next or titles.page.has_previous)
    if not paging and len({row.id for row in [*results, *names]}) == 1:
        return redirect(url_for("pages.image", image_id=(results or names)[0].id,
                                space=kept_space()))
    records = {**db.catalogue.records_of(connection, seen),
               **(titles.records if titles else {})}
    return render_template(
        "search.html", query=query, results=cards([_item(row) for row in results], records),
        names=cards([_item(row) for row in names], records), limit=SEARCH_LIMIT,
        json_url=titles.url("/api/v1/images/search") if titles else None,
        next_url=titles.next_url("/search") if titles else None,
        previous_url=titles.previous_url("/search") if titles else None), \
        200 if results or names else 404


def _item(row) -> Item:
    return Item(row.id, row.path, row.file_name, row.status, row.error)


@bp.get("/browse")
def gallery():
    """Show the collection as thumbnails, a page at a time, with its folder tree."""
    view = browse_request()
    return render_template("browse.html", view=view, statuses=STATUSES,
                           orders=db.browse.ORDERS,
                           cards=cards([_item(row) for row in view.page.rows], view.records))


@bp.get("/images/<image_id>")
def image(image_id: str):
    """Show an image, its nearest neighbours in one space and its details."""
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
    space = asked or improved_space(computed)
    neighbours = []
    if row.status == OK and space in computed:
        # The whole stored list: "Show more" and the filters need no second request.
        _, neighbours = db.neighbours.image_and_neighbours(connection, row.id, 1,
                                                           MAX_NEIGHBOURS, space)
    has_features = row.status == OK and db.features.has_features(connection, row.id)
    records = db.catalogue.records_of(connection, [row.id] + [n.id for n in neighbours])
    paths = db.images.paths_of(connection, [n.id for n in neighbours])
    grid = cards([Item(n.id, paths.get(n.id, n.file_name), n.file_name, rank=n.rank,
                       distance=n.distance) for n in neighbours], records, space)
    folders = Counter(folder_of(card.path) for card in grid)
    # "/" names the top folder: an empty value is the form's "all folders".
    folder = request.args.get("folder") or None
    if folder == "/":
        folder = ""
    catalogued = request.args.get("catalogued") == "1"
    filtered = folder is not None or catalogued
    if folder is not None:
        grid = [card for card in grid if folder_of(card.path) == folder]
    if catalogued:
        grid = [card for card in grid if card.catalogued]
    record = records.get(row.id)
    status = 410 if row.status == MISSING else 200
    return render_template("image.html", image=row, cards=grid, has_features=has_features,
                           space=space, spaces=spaces, listed=len(neighbours),
                           exclusion=db.exclusions.exclusion(connection, row.id),
                           computed=space in computed,
                           reason=unavailable_reason(row.status, row.error),
                           previous_id=db.images.previous_id(connection, row.id),
                           next_id=db.images.next_id(connection, row.id),
                           shown=len(grid) if filtered or request.args.get("all") == "1"
                           else FIRST_NEIGHBOURS,
                           page_size=FIRST_NEIGHBOURS, folders=sorted(folders.items()),
                           folder=folder, catalogued=catalogued, filtered=filtered,
                           any_catalogued=len(records) > (row.id in records),
                           record=record,
                           record_url=serialize.safe_url(record.url if record else None),
                           extra=serialize.extra_fields(record),
                           # A IIIF collection's image: where it came from, not this
                           # service's IIIF endpoints (they serve files on disk only).
                           source={"manifest": serialize.safe_url(row.manifest_id),
                                   "service": serialize.safe_url(row.iiif_service)}), status


PREVIEW_SIZE = 384  # pixels of the query's preview on the results page


def _search_spaces():
    """Return (spaces, the one to preselect): the one asked for, else improved_space."""
    spaces = serialize.spaces(db.spaces.overview(database.connection()))
    computed = {space["name"] for space in spaces if space["computed"]}
    asked = kept_space()
    return spaces, (asked if asked in computed else improved_space(computed))


@bp.route("/search-by-image", methods=["GET", "POST"])
def search_by_image():
    """Show the upload form; on a post, the nearest stored images beside the query."""
    spaces, default_space = _search_spaces()
    context = {"spaces": spaces, "space": default_space, "limit": RESULTS, "result": None,
               "error": None, "preview": None, "cards": [],
               "accept": ",".join(image_search.UPLOAD_TYPES),
               "model_ready": image_search.model_ready()}
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
    connection = database.connection()
    ids = [n.id for n in result.rows]
    paths = db.images.paths_of(connection, ids)
    context.update(result=result, preview=_preview(upload.data), model_ready=True,
                   cards=cards([Item(n.id, paths.get(n.id, n.file_name or ""),
                                     n.file_name or "", rank=n.rank, distance=n.distance)
                                for n in result.rows],
                               db.catalogue.records_of(connection, ids), space,
                               link_space=space))
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
