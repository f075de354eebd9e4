"""Where a job's partitions run: in the job's process, or on a Dask cluster.

`open_client(scheduler)` gives the Dask client the jobs hand their partitions to, or
None for none (the default: the jobs then run as they always did, in-process, and Dask is
not even imported). A scheduler is one of
- "" (or None): no cluster;
- "local" or "local:N": a LocalCluster on this machine with one worker process per core,
  or N, each running one task at a time (threads_per_worker=1; the jobs' tasks use one
  core each, so the workers are the parallelism);
- an address such as "tcp://10.0.0.5:8786": an existing scheduler;
- a distributed Client, or a cluster object (LocalCluster, dask_jobqueue.SLURMCluster,
  ...): used as it is, and left open for its owner.
The jobs keep every database access on their own side: workers only compute.
"""
from __future__ import annotations

import logging
import os
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Iterable, Iterator

from runtime.jobrun import JobError

log = logging.getLogger(__name__)

LOCAL = "local"
CONNECT_TIMEOUT = "30s"  # how long a job waits for an unreachable scheduler
IN_FLIGHT_PER_THREAD = 2  # tasks queued per worker thread, so none waits for work


class SchedulerError(Exception):
    """No cluster could be opened with the scheduler given; str() says why, on one line."""


def wanted(scheduler: Any) -> bool:
    """Return whether `scheduler` names a cluster (None and "" do not)."""
    return scheduler is not None and not (isinstance(scheduler, str)
                                          and not scheduler.strip())


def local_workers(scheduler: str) -> int | None:
    """Return the worker count of a "local[:N]" scheduler, None for any other value."""
    if scheduler == LOCAL:
        return os.cpu_count() or 1
    if not scheduler.startswith(LOCAL + ":"):
        return None
    text = scheduler[len(LOCAL) + 1:]
    try:
        count = int(text)
    except ValueError:
        raise SchedulerError(f"local:N needs a number of workers, got {scheduler!r}") \
            from None
    if count < 1:
        raise SchedulerError(f"local:N needs at least 1 worker, got {scheduler!r}")
    return count


@contextmanager
def open_client(scheduler: Any) -> Iterator[Any]:
    """Yield a distributed Client for `scheduler` (see the module's docstring), or None;
    close what was opened here on leaving."""
    if not wanted(scheduler):
        yield None
        return
    # Only with a scheduler: dask and distributed take a second to import and start
    # threads of their own.
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if not isinstance(scheduler, str):  # a cluster object: its owner closes it
        with Client(scheduler) as client:
            yield client
        return
    scheduler = scheduler.strip()
    workers = local_workers(scheduler)
    if workers is not None:
        log.info("starting a local Dask cluster of %d worker processes", workers)
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as error:
        raise SchedulerError(f"cannot connect to the Dask scheduler {scheduler}: "
                             f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") \
            from None
    with client:
        log.info("connected to the Dask scheduler %s (%d workers)", scheduler,
                 len(client.scheduler_info().get("workers", {})))
        yield client


def worker_threads(client) -> int:
    """Return how many tasks the cluster's workers run at once, in all (at least 1)."""
    return max(1, sum(client.nthreads().values()))


def threads_per_worker(client) -> int:
    """Return the most tasks one worker runs at once (at least 1)."""
    return max([1, *client.nthreads().values()])


def windowed(client, calls: Iterable[tuple[Any, Callable, tuple]], *, ordered: bool,
             what: str, kept: str) -> Iterator[tuple[Any, Any]]:
    """Run calls (key, function, arguments) on the cluster, a bounded number at a time;
    yield (key, result) in the calls' order, or as they complete. A cluster's failure
    leaves as a one-line JobError naming `what` a task is and what `kept` of the run."""
    from distributed import as_completed

    # A bounded number of tasks on the cluster at a time: the scheduler does not hold
    # every task of a large archive, results wait in memory for the writer only a few
    # at a time, and a failure stops the run soon. The window follows the cluster's
    # current size (an adaptive cluster grows and shrinks).
    calls = iter(calls)
    pending: dict = {}  # future: key, in the order submitted
    completed = None if ordered else as_completed()

    def top_up() -> None:
        while len(pending) < IN_FLIGHT_PER_THREAD * worker_threads(client):
            call = next(calls, None)
            if call is None:
                return
            key, function, arguments = call
            future = client.submit(function, *arguments, pure=False)
            pending[future] = key
            if completed is not None:
                completed.add(future)

    try:
        top_up()
        while pending:
            future = next(iter(pending)) if ordered else next(completed)
            result = task_result(future, what, kept)
            key = pending.pop(future)
            top_up()
            yield key, result
    finally:
        for future in pending:
            future.cancel()


def task_result(future, what: str, kept: str):
    """Return a task's result; a failure leaves as a one-line JobError."""
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker
    try:
        result = future.result()
    except KilledWorker:
        raise JobError(f"a {what}'s Dask workers died again and again (see "
                       f"distributed.scheduler.allowed-failures); {kept}") from None
    except FutureCancelledError:
        raise JobError(f"the Dask cluster cancelled a {what} (scheduler gone?); {kept}") \
            from None
    except (JobError, KeyboardInterrupt):
        raise
    except Exception as error:  # the worker's own error, raised here
        raise JobError(f"a Dask worker failed: {type(error).__name__}: {error}; {kept}") \
            from error
    future.release()
    return result


class OnDemand:
    """A client opened on first use only (a run with nothing to compute starts no
    cluster), closed on leaving: `with OnDemand(scheduler) as cluster: cluster.client()`."""

    def __init__(self, scheduler: Any):
        self.scheduler = scheduler
        self._stack = ExitStack()
        self._client = None

    def __bool__(self) -> bool:
        return wanted(self.scheduler)

    def client(self):
        if self._client is None and wanted(self.scheduler):
            self._client = self._stack.enter_context(open_client(self.scheduler))
        return self._client

    def __enter__(self) -> "OnDemand":
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
