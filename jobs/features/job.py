"""The feature job: bring the database up to date with the JPEG files under IMAGE_ROOT."""
from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from db.features import other_models, outdated_ids, with_features
from db.images import load_known, mark_missing, paths_of, register
from db.models import MISSING, OK
from jobs.features.plan import CHANGED, NEW, OUTDATED, REAPPEARED, FileTask, Plan, gone_ids, \
    make_plan
from jobs.features.remote import remote_tasks
from jobs.features.scan import Scan, scan
from numerics.vectors import MODEL_NAME, OUTDATED_MODELS
from runtime.distribute import wanted
from runtime.fetch import FetchOptions, Fetcher
from runtime.jobrun import JobError, connect, one_run_at_a_time, recorded, short_error
from runtime.progress import Progress
from runtime.settings import Settings

log = logging.getLogger(__name__)

COUNTS = ("new", "changed", "unchanged", "missing", "failed", "reappeared", "retried",
          "recomputed", "deferred")


def run(settings: Settings, *, quiet: bool = False, dry_run: bool = False,
        limit: int | None = None, retry_failed: bool = False, extractor=None,
        threads: int | None = None, scheduler=None,
        partition_size: int | None = None) -> dict[str, int]:
    """Run the feature job and return its counts; raise JobError when it cannot run.

    scheduler: where the files are computed (distribute.open_client; default the
    DASK_SCHEDULER setting, empty for in-process). On a cluster the workers load the
    model, so `extractor` is not used.
    """
    scheduler = settings.dask_scheduler if scheduler is None else scheduler
    threads = threads or settings.decode_threads or None
    root = settings.image_root
    if not root.is_dir():
        raise JobError(f"IMAGE_ROOT {root} is not a folder")
    if limit is not None and limit < 0:
        raise JobError(f"--limit must be 0 or more, got {limit}")
    if dry_run:
        return _dry_run(settings, limit=limit, retry_failed=retry_failed)
    if extractor is None and not wanted(scheduler):
        _check_weights(settings)
    engine = connect(settings.database_url)
    try:
        compute = _Compute(extractor, scheduler, threads, partition_size)
        with one_run_at_a_time(engine, "features", "create_image_features.py"), \
                recorded(engine, "features") as job:
            job.counts = _update(engine, settings, compute, quiet=quiet, limit=limit,
                                 retry_failed=retry_failed)
            return job.counts
    finally:
        engine.dispose()


@dataclass(frozen=True)
class _Compute:
    """Where the model runs: `extractor` in this process (None: loaded once there is
    something to extract), or the workers of `scheduler`."""

    extractor: object
    scheduler: object
    threads: int | None
    partition_size: int | None


def _update(engine: Engine, settings: Settings, compute: _Compute, *, quiet: bool,
            limit: int | None, retry_failed: bool) -> dict[str, int]:
    """Scan, plan, mark missing, register new files, extract; return the counts."""
    found = _scan(settings.image_root)
    known = load_known(engine)
    present = sum(row.status != MISSING for row in known.values())
    if not found.files and present:
        # An unmounted share looks like an empty folder; marking the whole archive missing
        # would empty every neighbour list on the next grouping run.
        raise JobError(f"IMAGE_ROOT {settings.image_root} holds no JPEG files, but the "
                       f"database lists {present} present images; is it mounted? "
                       "Nothing was changed")
    outdated = outdated_ids(engine, MODEL_NAME)
    plan = _plan(engine, found, known, limit=limit, retry_failed=retry_failed,
                 outdated=outdated)
    _log_plan(len(found.files), plan)
    mark_missing(engine, plan.missing)
    new_files = [w.file for w in plan.work if w.known is None]
    ids = register(engine, [{"path": f.text, "path_hash": f.path_hash,
                             "file_name": f.file_name, "size": f.size,
                             "mtime_ns": f.mtime_ns} for f in new_files])
    reappearing = [w.known.id for w in plan.work if w.kind == REAPPEARED]
    featured = with_features(engine, reappearing)
    tasks = [_task(settings.image_root, w, ids, featured, outdated) for w in plan.work]
    tasks += remote_tasks(engine, outdated, settings.iiif_fetch_size)
    counts: Counter = Counter()
    if tasks:
        counts = _extract(tasks, engine, compute, settings, quiet=quiet)
    counts["unchanged"] += plan.unchanged
    counts["missing"] += len(plan.missing)
    counts["deferred"] += plan.deferred
    result = {name: counts[name] for name in COUNTS}
    if outdated:
        result["note"] = _outdated_note(engine, counts["recomputed"])
    return result


def _outdated_note(engine: Engine, recomputed: int) -> str:
    """Say why stored vectors are being recomputed and how many are left."""
    left = other_models(engine, MODEL_NAME)
    if not left:
        return (f"{recomputed} vectors of an earlier version recomputed, none left; "
                "group_images.py now brings every list up to date")
    reasons = "; ".join(f"{count} {OUTDATED_MODELS.get(model, f'made by model {model}')}"
                        for model, count in sorted(left.items()))
    return (f"{recomputed} vectors of an earlier version recomputed, "
            f"{sum(left.values())} still to do by the next runs ({reasons}); "
            "group_images.py keeps the lists as they are until all are done")


def _extract(tasks: list[FileTask], engine: Engine, compute: _Compute, settings: Settings,
             *, quiet: bool) -> Counter:
    """Run the worker over all tasks with a progress bar or periodic log lines."""
    progress = Progress(len(tasks), "images", quiet)
    try:
        if wanted(compute.scheduler):
            return _extract_on_cluster(tasks, engine, compute, settings, progress)
        # Imported and loaded here: TensorFlow and the model take 10-20 s, and dry runs,
        # no-op reruns and start-up errors do not need them.
        from jobs.features.extract import extract
        options = _fetch_options(tasks, settings)
        extractor = compute.extractor or _OnFirstUse(settings)
        return extract(tasks, engine, extractor, batch_size=settings.batch_size,
                       max_pixels=settings.max_image_pixels, threads=compute.threads,
                       on_batch=progress.update,
                       fetcher=Fetcher(options) if options else None)
    finally:
        progress.close()


def _extract_on_cluster(tasks: list[FileTask], engine: Engine, compute: _Compute,
                        settings: Settings, progress: Progress) -> Counter:
    # Dask only with a scheduler: without one it is not even imported.
    from runtime.distribute import SchedulerError, open_client
    from jobs.features.cluster import extract_on
    try:
        with open_client(compute.scheduler) as client:
            return extract_on(client, tasks, engine, MODEL_NAME,
                              model_cache=settings.model_cache,
                              batch_size=settings.batch_size,
                              max_pixels=settings.max_image_pixels, threads=compute.threads,
                              partition_size=compute.partition_size,
                              on_batch=progress.update,
                              fetch=_fetch_options(tasks, settings))
    except SchedulerError as error:
        raise JobError(str(error)) from None


def _fetch_options(tasks: list[FileTask], settings: Settings) -> FetchOptions | None:
    """Return how to fetch the IIIF images among `tasks`; None when there are none."""
    return FetchOptions.from_settings(settings) if any(t.url for t in tasks) else None


def _task(root: Path, work, ids: dict[str, int], featured: set[int],
          outdated: frozenset[int]) -> FileTask:
    file, row = work.file, work.known
    common = {"path": os.path.join(root, file.rel), "kind": work.kind, "size": file.size,
              "mtime_ns": file.mtime_ns}
    if row is None:
        return FileTask(image_id=ids[file.path_hash], prior_status="pending", **common)
    # A changed or reappearing file whose content hash is the recorded one keeps its
    # result, unless an earlier model made it; new, pending, retried and outdated files
    # are always decoded.
    reuse = work.kind in (CHANGED, REAPPEARED) and row.id not in outdated
    has_features = row.status == OK or row.id in featured
    return FileTask(image_id=row.id, prior_status=row.status, stored_hash=row.content_hash,
                    reuse=reuse, has_features=has_features, **common)


def _scan(root: Path) -> Scan:
    found = scan(root)
    if "" in found.unreadable_dirs:
        raise JobError(f"IMAGE_ROOT {root} cannot be read")
    return found


def _plan(engine: Engine | None, found: Scan, known: dict, *, limit: int | None,
          retry_failed: bool, outdated: frozenset[int]) -> Plan:
    paths = None
    if found.unreadable_dirs and engine is not None:
        with engine.connect() as connection:
            paths = paths_of(connection, gone_ids(found, known))
    return make_plan(found, known, retry_failed=retry_failed, limit=limit, paths=paths,
                     outdated=outdated)


def _log_plan(found: int, plan: Plan) -> None:
    counts = plan.counts()
    log.info("%d files found: %d new, %d changed (size or mtime), %d reappeared, "
             "%d failed to retry, %d unchanged, %d with a vector of an earlier model to "
             "recompute, %d gone; %d left for a later run (--limit)",
             found, counts[NEW], counts[CHANGED], counts[REAPPEARED], counts["retry"],
             counts["unchanged"], counts[OUTDATED], counts["missing"], counts["deferred"])


def _dry_run(settings: Settings, *, limit: int | None, retry_failed: bool) -> dict[str, int]:
    """Return what a run would do, reading the database only if it exists."""
    engine = None
    url = make_url(settings.database_url)
    exists = url.get_backend_name() != "sqlite" or (
        url.database not in (None, "", ":memory:") and Path(url.database).is_file())
    known: dict = {}
    outdated: frozenset[int] = frozenset()
    if exists:
        engine = connect(settings.database_url, read_only=True)
    try:
        if engine is not None and inspect(engine).has_table("images"):
            known = load_known(engine)
            outdated = outdated_ids(engine, MODEL_NAME)
        found = _scan(settings.image_root)
        plan = _plan(engine, found, known, limit=limit, retry_failed=retry_failed,
                     outdated=outdated)
    except SQLAlchemyError as error:
        raise JobError(f"cannot read the database: {short_error(error)}") from error
    finally:
        if engine is not None:
            engine.dispose()
    counts = plan.counts()
    return {"new": counts[NEW], "changed": counts[CHANGED], "reappeared": counts[REAPPEARED],
            "retried": counts["retry"], "recomputed": counts[OUTDATED],
            "unchanged": counts["unchanged"],
            "missing": counts["missing"], "deferred": counts["deferred"]}


def _check_weights(settings: Settings) -> None:
    """Stop before the database is touched where the model's weights are neither
    converted (MODEL_CACHE) nor installed; without importing TensorFlow, which is loaded
    only when there is something to extract."""
    from model.archive import ModelUnavailable, find_archive
    if not settings.model_cache.is_file():
        try:
            find_archive()
        except ModelUnavailable as error:
            raise JobError(str(error)) from None


class _OnFirstUse:
    """The model, loaded when the first decoded image needs it: a rerun whose only work
    is IIIF images that all answer 304 (not modified) loads none."""

    name = MODEL_NAME

    def __init__(self, settings: Settings):
        self._settings, self._extractor = settings, None

    def __call__(self, batch):
        if self._extractor is None:
            self._extractor = _load_extractor(self._settings)
        return self._extractor(batch)


def _load_extractor(settings: Settings):
    from model import ModelUnavailable, load_extractor
    try:
        return load_extractor(settings.model_cache)
    except ModelUnavailable as error:
        raise JobError(str(error)) from None
    except (RuntimeError, OSError, ValueError) as error:  # a cache or archive that is off
        raise JobError(f"cannot load the model: {error}") from None

