"""The feature job's work for images of IIIF collections (imported by import_iiif.py).

Every run asks for each of them: an 'ok' image conditionally (If-None-Match /
If-Modified-Since with the validators of its last fetch), so an unchanged image costs a
304 and no transfer; a new, failed or outdated one in full. What arrives goes through
the same hash, decode and model as a file (jobs/features/extract.py): an image whose
bytes hash as before keeps its vector.
"""
from __future__ import annotations

from sqlalchemy.engine import Engine

from db.iiif import to_fetch
from db.models import FAILED, OK, PENDING
from jobs.features.plan import CHANGED, NEW, OUTDATED, RETRY, FileTask


def remote_tasks(engine: Engine, outdated: frozenset[int], size: str) -> list[FileTask]:
    """Return a task per IIIF image not marked missing; `size` (IIIF_FETCH_SIZE) asks
    an image service for that size instead of the full image."""
    tasks = []
    for image in to_fetch(engine):
        url = image.source_url
        if size and image.iiif_service:
            url = f"{image.iiif_service}/full/{size}/0/default.jpg"
        if image.status == PENDING:
            kind = NEW
        elif image.status == FAILED:
            kind = RETRY  # a failed fetch is retried by every run
        elif image.id in outdated:
            kind = OUTDATED
        else:
            kind = CHANGED
        conditional = kind == CHANGED and image.status == OK
        tasks.append(FileTask(
            image_id=image.id, path=url, kind=kind, prior_status=image.status,
            size=image.size or 0, mtime_ns=0, stored_hash=image.content_hash,
            reuse=kind == CHANGED, has_features=image.status == OK, url=url,
            etag=image.http_etag if conditional else None,
            last_modified=image.http_last_modified if conditional else None))
    return tasks
