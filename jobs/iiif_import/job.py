"""The IIIF import: read manifests and collections, bring the images table up to date.

New canvas images become 'pending' rows (the feature job fetches and computes them);
images no longer in the source are marked missing (never deleted, ids never reused),
except those of manifests that could not be read this time; images whose URL changed are
fetched and computed again by the next feature run; images back in the source are
pending again. Catalogue fields the CSV import left empty are filled from the manifest.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError

from db.catalogue import stored_records, write_records
from db.iiif import ids_of_hashes, load_imported, update_imported
from db.images import mark_missing, register
from db.models import MISSING, title_key
from db.paths import path_hash, raw_path
from jobs.iiif_import.parse import CanvasImage, Reading, SourceError, load_file, read_source
from runtime.fetch import FetchOptions, Fetcher, is_web_url
from runtime.jobrun import JobError, connect, one_run_at_a_time, recorded, short_error
from runtime.settings import Settings

log = logging.getLogger(__name__)

PROG = "import_iiif.py"
KIND = "iiif_import"
FILE_NAME_MAX = 255


@dataclass
class Plan:
    new: list[dict] = field(default_factory=list)  # rows to register
    changes: dict[int, dict] = field(default_factory=dict)  # id -> IMPORTED values
    refetch: list[int] = field(default_factory=list)
    reappeared: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    unchanged: int = 0


def run(settings: Settings, source: str, *, dry_run: bool = False, max_depth: int = 5,
        max_manifests: int = 10_000) -> dict:
    """Import `source` (a URL or a JSON file) and return the counts."""
    source = _source_id(source)
    fetcher = Fetcher(FetchOptions.from_settings(settings))
    try:
        reading = read_source(source, lambda url: _load(fetcher, url), max_depth=max_depth,
                              max_manifests=max_manifests)
    except SourceError as error:
        raise JobError(str(error)) from None
    finally:
        fetcher.close()
    for problem in reading.problems:
        log.warning("%s", problem)
    engine = connect(settings.database_url, read_only=dry_run)
    try:
        if dry_run:
            try:
                known = load_imported(engine) if inspect(engine).has_table("images") else {}
            except SQLAlchemyError as error:
                raise JobError(f"cannot read the database: {short_error(error)}") from None
            return _counts(reading, make_plan(reading, known, source))
        # The feature job's lock: both write the IIIF images' rows, so one at a time.
        with one_run_at_a_time(engine, "features", PROG), recorded(engine, KIND) as job:
            plan = make_plan(reading, load_imported(engine), source)
            apply(engine, plan, reading)
            job.counts = _counts(reading, plan)
            return job.counts
    finally:
        engine.dispose()


def _source_id(source: str) -> str:
    if is_web_url(source):
        return source
    return os.path.abspath(source)


def _load(fetcher: Fetcher, url: str) -> dict:
    if not is_web_url(url):
        return load_file(url)
    fetched = fetcher.get(url)
    if fetched.error:
        raise ValueError(fetched.error)
    try:
        return json.loads(fetched.data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"not JSON: {error}") from None


def _values(image: CanvasImage, source: str) -> dict:
    return {"source_url": image.source_url, "iiif_service": image.service,
            "iiif_source": source, "manifest_id": image.manifest_id,
            "canvas_id": image.canvas_id, "iiif_label": image.label}


def wanted_images(reading: Reading) -> dict[str, CanvasImage]:
    """Return the source's images by path_hash, the first canvas of each image kept."""
    wanted: dict[str, CanvasImage] = {}
    for image in reading.images:
        wanted.setdefault(path_hash(raw_path(image.key)), image)
    return wanted


def make_plan(reading: Reading, known: dict, source: str) -> Plan:
    plan = Plan()
    wanted = wanted_images(reading)
    for digest, image in wanted.items():
        values = _values(image, source)
        row = known.get(digest)
        if row is None:
            name = image.key.rstrip("/").rpartition("/")[2] or image.key
            plan.new.append({"path": image.key, "path_hash": digest,
                             "file_name": name[:FILE_NAME_MAX], "size": None,
                             "mtime_ns": None, **values})
            continue
        if row.status == MISSING:
            plan.reappeared.append(row.id)
        if row.values != values:
            plan.changes[row.id] = values
            if row.values["source_url"] != values["source_url"]:
                plan.refetch.append(row.id)
        elif row.status != MISSING:
            plan.unchanged += 1
    unread = set(reading.failed_manifests)
    plan.missing = sorted(row.id for digest, row in known.items()
                          if row.values["iiif_source"] == source and digest not in wanted
                          and row.status != MISSING
                          and row.values["manifest_id"] not in unread)
    return plan


def apply(engine, plan: Plan, reading: Reading) -> None:
    """Write the plan: each step commits on its own and a rerun finishes a killed one."""
    mark_missing(engine, plan.missing)
    update_imported(engine, plan.changes, plan.refetch, plan.reappeared)
    register(engine, plan.new)
    _fill_catalogue(engine, wanted_images(reading))


def _fill_catalogue(engine, wanted: dict[str, CanvasImage]) -> None:
    """Fill the catalogue fields that are empty from the manifest: title (the canvas
    label, else the manifest's), url (homepage / related), extra (metadata pairs)."""
    with engine.begin() as connection:
        ids = ids_of_hashes(connection, list(wanted))
        stored = stored_records(connection, ids.values())
        new, changed = {}, {}
        for digest, image in wanted.items():
            image_id = ids[digest]
            record = stored.get(image_id) or {"external_id": None, "title": None,
                                              "title_key": None, "url": None,
                                              "extra": None, "excluded": False}
            filled = dict(record)
            if filled["title"] is None and image.label:
                filled["title"], filled["title_key"] = image.label, title_key(image.label)
            if filled["url"] is None and image.homepage:
                filled["url"] = image.homepage
            if filled["extra"] is None and image.metadata:
                filled["extra"] = json.dumps(image.metadata, ensure_ascii=False,
                                             sort_keys=True)
            if filled != record:
                (changed if image_id in stored else new)[image_id] = filled
        write_records(connection, new, changed, [])


def _counts(reading: Reading, plan: Plan) -> dict:
    counts = {"manifests": len(reading.manifests), "images": len(wanted_images(reading)),
              "new": len(plan.new), "updated": len(plan.changes),
              "reappeared": len(plan.reappeared), "missing": len(plan.missing),
              "unchanged": plan.unchanged,
              "problems": len(reading.problems)}
    return counts
