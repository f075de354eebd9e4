"""Where the grouping job's mapper runs: in this process, or on a Dask cluster.

Both give the same lists, bit for bit: the engine is exact, its distances come from one
float64 kernel whatever the blocking, and ties are broken by neighbour id. The job reads
and writes the database itself and hands the mapper only arrays:
- InProcess runs jobs.grouping.mapper on one ExactIndex, a full space through search_all
  (each distance block serves both its sides);
- OnCluster scatters the space's index to every worker once (broadcast) and sends tasks
  to them: search_all's distance blocks and rankings (full runs: each block once for
  both its sides, the candidates gathered here), or mapper blocks (incremental runs).
  Results come back in block order, at most a few blocks per worker thread ahead, so the
  job's writer commits them in order with its resume point, as in-process.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from jobs.grouping.mapper import Block, Entering, map_block, search_new
from numerics.engine import ExactIndex
from numerics.list_changes import ListChanges
from runtime.distribute import IN_FLIGHT_PER_THREAD, task_result, threads_per_worker, \
    windowed, worker_threads

KEPT = "the lists written so far are kept, the next run resumes after them"


class InProcess:
    """The mapper on this machine's cores."""

    def __init__(self, vectors: np.ndarray, ids: np.ndarray, memory_bytes: int):
        self.index = ExactIndex(vectors, ids)
        self.memory_bytes = memory_bytes

    def search_new(self, new_ids, merge_ids, ends, k: int) -> tuple[dict, Entering]:
        return search_new(self.index, new_ids, merge_ids, ends, k, self.memory_bytes)

    def full(self, k: int, block_rows: int) -> Iterator[tuple[np.ndarray, ListChanges]]:
        for start, stop, ids, distances in self.index.search_all(k, self.memory_bytes,
                                                                 block_rows):
            block = self.index.ids[start:stop]
            yield block, ListChanges.replacing(block, ids, distances)

    def blocks(self, blocks: Iterable[tuple[np.ndarray, Block]], new_lists: dict,
               k: int) -> Iterator[tuple[np.ndarray, ListChanges]]:
        for ids, block in blocks:
            yield ids, map_block(self.index, block, new_lists, k, self.memory_bytes)

    def close(self) -> None:
        pass


class OnCluster:
    """The mapper on the workers of a distributed Client."""

    def __init__(self, client, vectors: np.ndarray, ids: np.ndarray, memory_bytes: int):
        self.client = client
        self.ids = np.asarray(ids, dtype=np.int64)
        # One engine thread per task: the workers' threads are the parallelism (a worker
        # with 16 threads runs 16 blocks), and each task's blocks share its memory.
        self.memory_bytes = max(1 << 20, memory_bytes // threads_per_worker(client))
        # Norms computed once here; the index goes to every worker once, not per block.
        self.local = ExactIndex(vectors, ids, threads=1)
        self.index = client.scatter(self.local, broadcast=True, hash=False)

    def search_new(self, new_ids, merge_ids, ends, k: int) -> tuple[dict, Entering]:
        # One product of the new images against all: one task.
        future = self.client.submit(search_new, self.index, new_ids, merge_ids, ends, k,
                                    self.memory_bytes, pure=False)
        return task_result(future, "block", KEPT)

    def full(self, k: int, block_rows: int) -> Iterator[tuple[np.ndarray, ListChanges]]:
        # search_all here, its distance blocks and rankings on the workers: each block
        # once for both its sides, as in-process. Its candidates wait here.
        def submit(function, *arguments):
            return _Task(self.client.submit(function, self.index, *arguments, pure=False))

        for start, stop, ids, distances in self.local.search_all(
                k, self.memory_bytes, block_rows, submit=submit,
                in_flight=IN_FLIGHT_PER_THREAD * worker_threads(self.client)):
            block = self.ids[start:stop]
            yield block, ListChanges.replacing(block, ids, distances)

    def blocks(self, blocks: Iterable[tuple[np.ndarray, Block]], new_lists: dict,
               k: int) -> Iterator[tuple[np.ndarray, ListChanges]]:
        # Each block carries only the new images' lists it needs.
        calls = ((ids, map_block, (block, {i: new_lists[i] for i in block.whole.tolist()
                                           if i in new_lists}, k, self.memory_bytes))
                 for ids, block in blocks)
        yield from self._in_order(calls)

    def _in_order(self, calls) -> Iterator[tuple[np.ndarray, object]]:
        """Run calls (key, function, arguments after the index); yield (key, result) in
        the calls' order, so that the writer commits them in order with its resume
        point."""
        calls = ((key, function, (self.index, *arguments)) for key, function, arguments in calls)
        yield from windowed(self.client, calls, ordered=True, what="block", kept=KEPT)

    def close(self) -> None:
        self.index.release()


class _Task:
    """A worker's block of a full run: its failure leaves as a one-line JobError."""

    def __init__(self, future):
        self.future = future

    def done(self) -> bool:
        return self.future.done()

    def result(self):
        return task_result(self.future, "block", KEPT)

