"""The feature worker: read, hash and decode files in threads, run the model, write.

`extract(tasks, engine, extractor, ...)` is the unit of work over a partition of files:
one machine runs it over all files. On a Dask cluster (jobs/features/cluster.py) the workers
run `computed()`, the same stages without the writes, per partition, and the job writes
what they return with `write_batch()`. It holds no global state.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter, deque
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Callable, Iterable, Iterator

import numpy as np
from sqlalchemy.engine import Engine

from db.features import ImageResult, write_results
from db.models import FAILED, OK
from db.paths import stored_text
from jobs.features.plan import CHANGED, NEW, OUTDATED, REAPPEARED, RETRY, FileTask
from model.preprocess import ImageError, load_image
from numerics.vectors import encode_vector
from runtime.fetch import Fetcher

log = logging.getLogger(__name__)

ERROR_MAX = 500  # characters of an error kept in images.error


@dataclass(slots=True)
class Prepared:
    """A task after reading and decoding: an array for the model, or a finished result."""

    task: FileTask
    result: ImageResult | None = None
    array: np.ndarray | None = None
    stat: dict | None = None  # size, mtime_ns, content_hash, width, height
    outcome: str = ""  # ok | failed | reused


def prepare(task: FileTask, max_pixels: int, fetcher: Fetcher | None = None) -> Prepared:
    """Read (or fetch), hash and decode one image; any problem with it becomes a failed
    result."""
    read = _read(task) if task.url is None else _fetch(task, fetcher)
    if isinstance(read, Prepared):
        return read
    data, stat = read
    if task.reuse and stat["content_hash"] == task.stored_hash:
        status = OK if task.has_features else FAILED
        return Prepared(task, ImageResult(task.image_id, {**stat, "status": status},
                                          regroup=status == OK and task.prior_status != OK),
                        outcome="reused")
    try:
        array, width, height = load_image(data, max_pixels)
    except ImageError as error:
        return _failed(task, str(error), stat)
    except Exception as error:  # noqa: BLE001 - one odd file must not stop the run
        log.warning("unexpected error decoding %s", stored_text(task.path), exc_info=True)
        return _failed(task, f"cannot decode: {type(error).__name__}: {error}", stat)
    return Prepared(task, array=array, stat={**stat, "width": width, "height": height},
                    outcome=OK)


def _read(task: FileTask) -> tuple[bytes, dict] | Prepared:
    try:
        with open(task.path, "rb") as file:
            info = os.fstat(file.fileno())
            data = file.read()
    except PermissionError:
        return _failed(task, "permission denied")
    except FileNotFoundError:
        return _failed(task, "file disappeared during the run")
    except OSError as error:
        return _failed(task, f"cannot read file: {error.strerror or error}")
    # The size and mtime of what was actually read, so the next run compares like with like.
    return data, {"size": len(data), "mtime_ns": info.st_mtime_ns,
                  "content_hash": hashlib.sha256(data).hexdigest()}


def _fetch(task: FileTask, fetcher: Fetcher) -> tuple[bytes, dict] | Prepared:
    """Fetch a IIIF image: the bytes then go through the same decode as a file's."""
    fetched = fetcher.get(task.url, etag=task.etag, last_modified=task.last_modified,
                          expect_jpeg=True)
    if fetched.not_modified:  # asked only for an 'ok' image: its vector stays
        return Prepared(task, ImageResult(task.image_id, {"status": OK, "error": None}),
                        outcome="reused")
    if fetched.error:
        return _failed(task, fetched.error, {"http_etag": None, "http_last_modified": None})
    return fetched.data, {"size": len(fetched.data), "mtime_ns": None,
                          "content_hash": hashlib.sha256(fetched.data).hexdigest(),
                          "http_etag": fetched.etag,
                          "http_last_modified": fetched.last_modified}


def _failed(task: FileTask, reason: str, stat: dict | None = None) -> Prepared:
    # An unreadable file keeps the walk's size and mtime: the next run skips it as
    # unchanged instead of failing on it again (--retry-failed retries it).
    values = {"size": task.size, "mtime_ns": task.mtime_ns, "content_hash": None,
              **(stat or {}),
              "status": FAILED, "error": reason[:ERROR_MAX], "width": None, "height": None}
    return Prepared(task, ImageResult(task.image_id, values, regroup=task.prior_status == OK,
                                      drop_features=True), outcome=FAILED)


def in_order(tasks: Iterable[FileTask], pool: Executor, window: int,
             work: Callable[[FileTask], Prepared]) -> Iterator[Prepared]:
    """Yield work(task) in task order, keeping at most `window` tasks in flight."""
    iterator = iter(tasks)
    running = deque(pool.submit(work, task) for task in islice(iterator, window))
    while running:
        prepared = running.popleft().result()
        for task in iterator:
            running.append(pool.submit(work, task))
            break
        yield prepared


def decode_threads(requested: int | None) -> int:
    """Return the decode threads to use: `requested`, or for 0/None 4 at most on a CPU
    (the model needs the cores) and every core where TensorFlow sees a GPU (which would
    otherwise wait on JPEG decoding)."""
    if requested:
        return requested
    cores = os.cpu_count() or 1
    import tensorflow as tf  # already imported by the model; asks nothing of a GPU
    return cores if tf.config.list_physical_devices("GPU") else min(4, cores)


def computed(tasks: Iterable[FileTask], extractor, *, batch_size: int, max_pixels: int,
             threads: int | None = None,
             fetcher: Fetcher | None = None) -> Iterator[list[Prepared]]:
    """Yield the tasks in batches of `batch_size`, each with its result (vectors computed).

    Reading and decoding run in a thread pool, `2 * batch_size` files ahead, while the
    model works on the current batch: decode and resize are TensorFlow ops that release
    the GIL, so the threads decode in parallel and the model does not wait on them. With
    a `fetcher` (IIIF images) the pool has at least its concurrency of threads, so that
    that many requests wait on the network at once.
    """
    threads = decode_threads(threads)
    if fetcher is not None:
        threads = max(threads, fetcher.options.concurrency)
    batch: list[Prepared] = []
    pool = ThreadPoolExecutor(threads, thread_name_prefix="decode")
    try:
        for prepared in in_order(tasks, pool, 2 * batch_size + threads,
                                 lambda task: prepare(task, max_pixels, fetcher)):
            batch.append(prepared)
            if len(batch) >= batch_size:
                _compute(batch, extractor)
                yield batch
                batch = []
        if batch:
            _compute(batch, extractor)
            yield batch
    finally:
        # On an error or Ctrl-C, files not yet started are not decoded for nothing.
        pool.shutdown(wait=True, cancel_futures=True)


def extract(tasks: Iterable[FileTask], engine: Engine, extractor, *, batch_size: int,
            max_pixels: int, threads: int | None = None,
            on_batch: Callable[[int], None] | None = None,
            fetcher: Fetcher | None = None) -> Counter:
    """Process `tasks` in batches, each written in one transaction; return the counts."""
    counts: Counter = Counter()
    for batch in computed(tasks, extractor, batch_size=batch_size, max_pixels=max_pixels,
                          threads=threads, fetcher=fetcher):
        write_batch(engine, batch, extractor.name, counts, on_batch)
    return counts


def write_batch(engine: Engine, batch: list[Prepared], model: str, counts: Counter,
                on_batch: Callable[[int], None] | None = None) -> None:
    """Write a computed batch in one transaction and count it."""
    write_results(engine, [p.result for p in batch], model)
    for prepared in batch:
        _count(prepared, counts)
    if on_batch is not None:
        on_batch(len(batch))


def _compute(batch: list[Prepared], extractor) -> None:
    """Run the model on the batch's decoded images: every task then has its result."""
    decoded = [p for p in batch if p.array is not None]
    if decoded:
        vectors = extractor(np.stack([p.array for p in decoded]))
        for prepared, vector in zip(decoded, vectors):
            prepared.result = ImageResult(
                prepared.task.image_id, {**prepared.stat, "status": OK, "error": None},
                vector=encode_vector(vector), regroup=True)
            prepared.array = None  # free the memory before the write


def _count(prepared: Prepared, counts: Counter) -> None:
    kind = prepared.task.kind
    if prepared.outcome == "reused":
        counts["unchanged" if kind == CHANGED else kind] += 1
        return
    names = {NEW: "new", CHANGED: "changed", REAPPEARED: "reappeared", RETRY: "retried",
             OUTDATED: "recomputed"}
    counts[names[kind]] += 1
    if prepared.outcome == FAILED:
        counts["failed"] += 1
