"""Near-duplicate groups on a page (/duplicates) and as JSON (/api/v1/duplicates): the groups of report_duplicates.py.

The groups are computed from the stored lists (db/duplicates.py) once per space,
distance and grouping run, and kept in the worker: the lists change only when a
grouping run completes, and reading the close pairs visits every list. A page shows
`limit` groups from `start`, each member's details read for that page only.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

from flask import current_app, jsonify, render_template, request, url_for

from db import duplicates
import db.catalogue
import db.jobs
import db.spaces
from runtime import distances
from service import database, serialize
from service.cards import Item, cards
from service.errors import ApiError, int_param, space_param
from service.serialize import IIIF_PREFIX, paged
from service.limits import GROUPS, MAX_DISTANCE, MAX_GROUPS_PER_PAGE, MAX_START

_KEPT = 8              # (space, distance, run) results kept per worker
_cache: OrderedDict = OrderedDict()
_lock = threading.Lock()


def _distance_param(space: str) -> float:
    default = distances.duplicate_distance(space, current_app.config["SETTINGS"]
                                           .duplicate_distance)
    text = request.args.get("max_distance")
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= MAX_DISTANCE:
        raise ApiError(400, f"max_distance must be a number from 0 to {MAX_DISTANCE:g}, "
                            f"got {text[:40]!r}")
    return value


def _groups(connection, space: str, max_distance: float) -> list[list[int]]:
    run = db.jobs.last_jobs(connection).get("grouping")
    key = (space, max_distance, run and (run["id"], run["finished_at"]))
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    groups = duplicates.find_groups(connection, space, max_distance)
    with _lock:
        _cache[key] = groups
        while len(_cache) > _KEPT:
            _cache.popitem(last=False)
    return groups


def _page() -> dict:
    space = space_param()
    max_distance = _distance_param(space)
    start = int_param("start", 0, 0, MAX_START)
    limit = int_param("limit", GROUPS, 1, MAX_GROUPS_PER_PAGE)
    connection = database.connection()
    groups = _groups(connection, space, max_distance)
    shown = duplicates.describe(connection, groups[start:start + limit], space)
    params = {"space": space, "max_distance": max_distance, "limit": limit}
    root = request.script_root
    return {
        "space": space, "max_distance": max_distance, "start": start, "limit": limit,
        "groups_total": len(groups), "images_total": sum(map(len, groups)),
        "groups": [{"group": number, "size": len(members), "images": [
            {"id": m.image_id, "path": m.path, "file_name": m.file_name,
             "external_id": m.external_id, "title": m.title, "distance": m.distance,
             "links": {"page": f"{root}/images/{m.image_id}",
                       "thumbnail": f"{root}/images/{m.image_id}/thumbnail?size=256",
                       "iiif": f"{root}{IIIF_PREFIX}/{m.image_id}"}}
            for m in members]} for number, members in enumerate(shown, start + 1)],
        "previous": (None if start == 0 else
                     dict(params, start=max(0, start - limit))),
        "next": (dict(params, start=start + limit) if start + limit < len(groups)
                 else None),
    }


def _with_urls(page: dict, endpoint: str) -> dict:
    for name in ("previous", "next"):
        if page[name] is not None:
            page[name] = url_for(endpoint, **page[name])
    return page


# The views are registered in the blueprints of the API (service/api.py) and of the
# pages (service/pages.py): their errors then come as JSON and as pages.
def duplicates_json():
    """Return the near-duplicate groups, largest first, `limit` from group `start`."""
    page = _with_urls(_page(), "api.duplicates")
    return paged(jsonify(page), page["next"], page["previous"])


def duplicates_page():
    """Show the near-duplicate groups, largest first, thumbnails side by side."""
    page = _with_urls(_page(), "pages.duplicates")
    connection = database.connection()
    members = [m for group in page["groups"] for m in group["images"]]
    records = db.catalogue.records_of(connection, [m["id"] for m in members])
    groups = [(group, cards([Item(m["id"], m["path"], m["file_name"],
                                  # The first is the one the others are measured to.
                                  distance=m["distance"] if number else None)
                             for number, m in enumerate(group["images"])],
                            records, page["space"], link_space=page["space"]))
              for group in page["groups"]]
    spaces = [s for s in serialize.spaces(db.spaces.overview(connection)) if s["computed"]]
    return render_template("duplicates.html", page=page, groups=groups, spaces=spaces,
                           default=distances.duplicate_distance(
                               page["space"], current_app.config["SETTINGS"]
                               .duplicate_distance))
