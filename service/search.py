"""Search by an uploaded image: the feature job's decoding and model, the grouping job's
exact engine over the vectors of the last completed grouping run.

Shared by the JSON endpoint (POST /api/v1/search) and the page (/search-by-image). The
model loads once per worker process, in a background thread as the worker starts
(SEARCH_PRELOAD; else on the first search), and stays; a lock covers only that load, so
the other endpoints never wait for it, and a search arriving during it waits only for
the rest of it. Searches hold one of SEARCH_CONCURRENCY slots,
lock files under SEARCH_CACHE that every worker on the machine shares: when all are
taken the search is refused at once (503) rather than queued. Each search runs the model
and the vector search on SEARCH_THREADS threads, so that searches together take a bounded
share of the cores (by default half) and the neighbour endpoints keep the rest.
"""
from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple
from pathlib import Path

import numpy as np
from flask import current_app, request
import db.catalogue
from db.models import AUGMENTED, POOL3
from service import database
from service.errors import ApiError
from service.vector_store import NothingToSearch, VectorStore

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2
UPLOAD_FIELD = "image"
UPLOAD_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG"}  # model.preprocess.UPLOAD_FORMATS

# (process id, MODEL_CACHE path) -> Extractor: a forked worker loads its own.
_models: dict[tuple[int, Path], object] = {}
_model_lock = threading.Lock()
_preloads: list[tuple[Path, int]] = []  # what this process preloads, again after a fork


def extractor(model_cache: Path, threads: int | None = None):
    """Return the feature job's extractor, loading it on first use in this process.

    With `threads`, TensorFlow runs one op at a time on that many threads in this
    process (SEARCH_THREADS), so that a search takes a bounded share of the cores.
    """
    key = (os.getpid(), model_cache)
    model = _models.get(key)
    if model is None:
        with _model_lock:
            model = _models.get(key)
            if model is None:
                if threads:
                    _limit_tensorflow(threads)
                from model import load_extractor
                model = _models[key] = load_extractor(model_cache)
    return model


def model_ready(app=None) -> bool:
    """Return whether this process has the search model loaded."""
    settings = (app or current_app).config["SETTINGS"]
    return (os.getpid(), settings.model_cache) in _models


# The load starts this long after the app is made: gunicorn --preload makes the app in
# its master and forks the workers at once, and a fork must not catch TensorFlow half
# imported; a fork before it cancels the master's load and each worker loads its own.
PRELOAD_DELAY = 1.0
_timers: list[threading.Timer] = []


def preload(model_cache: Path, threads: int, delay: float = PRELOAD_DELAY) -> None:
    """Load the model in a background thread after `delay` seconds; a failure is logged
    and the first search tries again."""
    def load():
        started = time.perf_counter()
        try:
            extractor(model_cache, threads)
        except Exception:  # noqa: BLE001 - a search reports it; the worker must live
            log.exception("the search model could not be loaded in the background")
            return
        log.info("search model loaded in %.1f s (process %d)",
                 time.perf_counter() - started, os.getpid())

    timer = threading.Timer(delay, load)
    timer.name, timer.daemon = "search-model", True
    _timers.append(timer)
    timer.start()


def _before_fork() -> None:
    for timer in _timers:
        timer.cancel()  # a load that has not begun: the children load instead
    _timers.clear()


def _after_fork_in_child() -> None:
    global _model_lock
    _model_lock = threading.Lock()  # a thread of the parent may have held it
    for model_cache, threads in _preloads:
        preload(model_cache, threads)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def _limit_tensorflow(threads: int) -> None:
    import tensorflow as tf
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        # One op at a time: without it TensorFlow runs Inception's parallel branches at
        # once, each on `threads` threads.
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        # TensorFlow already ran in this process (the feature job's code in a test or a
        # benchmark): its thread pools are fixed now; searches still work.
        log.warning("TensorFlow is already initialised: SEARCH_THREADS=%d not applied",
                    threads)


class Slots:
    """SEARCH_CONCURRENCY lock files: a search holds one, or is refused."""

    def __init__(self, folder: Path, count: int):
        self.folder, self.count = Path(folder), count

    @contextmanager
    def acquire(self):
        """Hold a free slot for the block; raise ApiError 503 when none is free."""
        self.folder.mkdir(parents=True, exist_ok=True)
        # flock locks belong to an open file: two threads of one worker, or two
        # workers, exclude each other alike, and a killed worker's slot frees itself.
        for number in range(self.count):
            handle = open(self.folder / f"slot-{number}.lock", "a+b")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield
            finally:
                handle.close()  # closing releases the lock
            return
        raise ApiError(503, f"all {self.count} search slots are busy; retry in a moment",
                       headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                       retry_after=RETRY_AFTER_SECONDS)


@dataclass
class Upload:
    """The uploaded image as read from the request."""

    data: bytes
    declared: str | None  # the format its Content-Type named, if any


def init_app(app) -> None:
    """Give the app its vector store and search slots."""
    settings = app.config["SETTINGS"]
    app.extensions["search_store"] = VectorStore(
        settings.search_cache / "vectors", settings.database_url, app.extensions["db_engine"],
        threads=settings.search_threads)
    app.extensions["search_slots"] = Slots(settings.search_cache / "slots",
                                           settings.search_concurrency)
    if settings.search_preload and (settings.model_cache, settings.search_threads) \
            not in _preloads:
        _preloads.append((settings.model_cache, settings.search_threads))
        preload(settings.model_cache, settings.search_threads)


def read_upload(form_allowed: bool = True) -> Upload:
    """Return the uploaded image: multipart field `image` or a raw image/* body."""
    settings = current_app.config["SETTINGS"]
    # Per request (Flask ≥ 3.1): only this endpoint reads bodies. Werkzeug refuses a
    # larger Content-Length at once and cuts a chunked body at the limit (413).
    request.max_content_length = settings.search_max_upload_mb * 1024 * 1024
    # Form uploads are read in memory or into an anonymous temporary file: a client's
    # file name never reaches the disk.
    mimetype = request.mimetype
    if mimetype == "multipart/form-data" and form_allowed:
        # The page offers a camera and a file chooser, both named UPLOAD_FIELD: the
        # first one holding a file counts.
        files = request.files.getlist(UPLOAD_FIELD)
        file = next((f for f in files if f.filename), files[0] if files else None)
        if file is None:
            raise ApiError(400, f"send the image in the form field {UPLOAD_FIELD!r}")
        declared = UPLOAD_TYPES.get(file.mimetype)
        return Upload(file.read(), declared)
    if mimetype in UPLOAD_TYPES:
        return Upload(request.get_data(cache=False), UPLOAD_TYPES[mimetype])
    if not mimetype and not request.content_length and not request.stream.read(1):
        raise ApiError(400, "empty body: send a JPEG or PNG image")
    raise ApiError(415, f"unsupported content type {mimetype[:80]!r}: send image/jpeg or "
                        f"image/png as the body, or multipart/form-data with the field "
                        f"{UPLOAD_FIELD!r}", accepted=list(UPLOAD_TYPES))


class Found(NamedTuple):
    """One entry of the answer, shaped like a neighbour-list row."""

    rank: int
    id: int
    distance: float
    file_name: str | None
    external_id: str | None
    title: str | None


@dataclass
class Result:
    """A search's answer."""

    space: str
    job_id: int
    width: int
    height: int
    format: str
    vector: np.ndarray  # the query's 2048 pool_3 values
    rows: list[Found]


def search(upload: Upload, space: str, limit: int) -> Result:
    """Return the `limit` stored images nearest to the upload in `space`."""
    if not upload.data:
        raise ApiError(400, "the upload is empty: send a JPEG or PNG image")
    settings = current_app.config["SETTINGS"]
    # TensorFlow is imported by the first search, not by every worker at its start.
    from model.preprocess import ImageError, TooManyPixels, UnsupportedImage, load_upload
    with current_app.extensions["search_slots"].acquire():
        try:
            array, width, height, kind = load_upload(upload.data, settings.max_image_pixels)
        except UnsupportedImage as error:
            raise ApiError(415, str(error), accepted=list(UPLOAD_TYPES)) from None
        except TooManyPixels as error:
            raise ApiError(413, str(error)) from None
        except ImageError as error:
            raise ApiError(400, f"the upload is not a usable image: {error}") from None
        connection = database.connection()
        try:
            loaded = current_app.extensions["search_store"].current(connection)
        except NothingToSearch as error:
            raise ApiError(404, f"nothing to search yet: {error}") from None
        index = loaded.indexes.get(space)
        if index is None:
            raise ApiError(404, f"space {space} has no search vectors yet: the grouping "
                                "job has not completed a run with it", space=space)
        vector = extractor(settings.model_cache, settings.search_threads)(array[np.newaxis])[0]
        query = vector[np.newaxis]
        if space != POOL3:
            query = loaded.projection.apply(query)
        if space == AUGMENTED:
            query = loaded.augmented_query(query)
        # Id 0 is no image's id: nothing is excluded as "self".
        ids, distances = index.search(query, [0], limit)
    found = [(int(i), float(d)) for i, d in zip(ids[0], distances[0]) if i >= 0]
    labels = db.catalogue.labels_of(connection, [i for i, _ in found])
    rows = [Found(rank, image_id, distance, *labels.get(image_id, (None, None, None)))
            for rank, (image_id, distance) in enumerate(found, 1)]
    return Result(space, loaded.job_id, width, height, kind, vector, rows)
