"""The feature job on a Dask cluster: partitions of planned files computed by workers,
written by the job.

Each partition is a list of FileTasks. A worker reads, decodes and runs the model over
it with the same stages as the local loop (jobs.features.extract.computed), and returns the
batches with their results (ids, float32 vector bytes, errors); the model loads once per
worker process. The job writes each batch it receives in one transaction with the same
writer as the local loop, so what is committed stays resumable, no worker needs the
database, and a batch is written once: a partition whose worker dies before it returns
is run again elsewhere by the scheduler (up to its `allowed-failures`), and only its one
returned result is written.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from pathlib import Path
from typing import Callable

from sqlalchemy.engine import Engine

from jobs.features.plan import FileTask
from runtime.distribute import windowed
from runtime.fetch import FetchOptions, Fetcher

log = logging.getLogger(__name__)

PARTITION_BATCHES = 4  # model batches per partition: a task's work, about 4 commits

_loaded: dict[object, object] = {}  # extractors by weights file, fetchers by options
_loading = threading.Lock()


def worker_extractor(model_cache: str):
    """Return this process's extractor for the weights at `model_cache`, loaded on first
    use: once per worker process, however many partitions it runs."""
    with _loading:
        extractor = _loaded.get(model_cache)
        if extractor is None:
            from model import load_extractor
            extractor = _loaded[model_cache] = load_extractor(Path(model_cache))
        return extractor


def worker_fetcher(options: FetchOptions) -> Fetcher:
    """Return this process's fetcher for `options`: one connection pool per worker, so
    its per-host limit holds across the partitions it runs at once."""
    with _loading:
        fetcher = _loaded.get(options)
        if fetcher is None:
            fetcher = _loaded[options] = Fetcher(options)
        return fetcher


def compute_partition(tasks: list[FileTask], model_cache: str, batch_size: int,
                      max_pixels: int, threads: int | None,
                      fetch: FetchOptions | None = None) -> list[list]:
    """Return the partition's batches with their results (the worker's task). IIIF
    images are fetched here, on the worker: no shared file system is needed for them."""
    from jobs.features.extract import computed
    extractor = worker_extractor(model_cache)
    fetcher = worker_fetcher(fetch) if fetch is not None else None
    return list(computed(tasks, extractor, batch_size=batch_size, max_pixels=max_pixels,
                         threads=threads, fetcher=fetcher))


def partitions(tasks: list[FileTask], size: int) -> list[list[FileTask]]:
    return [tasks[start:start + size] for start in range(0, len(tasks), size)]


def extract_on(client, tasks: list[FileTask], engine: Engine, model: str, *,
               model_cache: Path, batch_size: int, max_pixels: int,
               threads: int | None = None, partition_size: int | None = None,
               on_batch: Callable[[int], None] | None = None,
               fetch: FetchOptions | None = None) -> Counter:
    """Compute `tasks` on the cluster of `client`, writing each batch as it comes back;
    return the counts as jobs.features.extract.extract does."""
    from jobs.features.extract import write_batch

    counts: Counter = Counter()
    calls = ((None, compute_partition, (partition, str(model_cache), batch_size, max_pixels,
                                        threads, fetch))
             for partition in partitions(tasks, partition_size or PARTITION_BATCHES * batch_size))
    # In the order they complete: each batch is written on its own, so the order of the
    # commits does not matter.
    for _, batches in windowed(client, calls, ordered=False, what="partition",
                               kept="the batches written so far are kept, the next run "
                                    "does the rest"):
        for batch in batches:
            write_batch(engine, batch, model, counts, on_batch)
    return counts
