"""The grouping job's writes: blocks of list changes, committed in order, each with the
run's progress.

Writes go to one background thread, in order, while the next block is computed: the
products release the GIL, and the database round trips do not need it. Each block's
transaction also advances the space's resume point to the block's last list
(jobs/grouping/plan.py) and stores the run's counts, so neither claims more than was written.
The caller's counts follow the commits: a failed run reports what it wrote.
"""
from __future__ import annotations

import copy
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy.engine import Engine

from db.models import SPACE_IDS
import db.neighbours
from numerics.list_changes import ListChanges


class Writer:
    """Writes one space's blocks; `counts` (the run's) and `state` (the space's entry in
    them) are updated as the writes commit."""

    def __init__(self, engine: Engine, space: str, job_id: int, counts: dict, state: dict):
        self.engine, self.space, self.job_id = engine, space, job_id
        self.counts, self.state = counts, state
        self.written = 0  # lists, committed or not, for the next block's progress
        self.pending: deque = deque()  # writes, oldest first
        self.thread = ThreadPoolExecutor(1, thread_name_prefix=f"write-{space}")

    def __enter__(self) -> "Writer":
        return self

    def write(self, changes: ListChanges, valid_through: int) -> None:
        """Queue a block's changes; all lists up to valid_through are then valid."""
        self.written += changes.lists()
        progress = copy.deepcopy(self.counts)
        progress["spaces"][self.space].update(lists_written=self.written)
        previous = self.pending[-1] if self.pending else None
        self.pending.append(self.thread.submit(self._write, changes, valid_through,
                                               progress, previous))
        while len(self.pending) > 1:  # at most one write waits behind the one under way
            self._finish_oldest()

    def close(self) -> None:
        """Wait for every write; their counts are then in `counts`."""
        while self.pending:
            self._finish_oldest()

    def __exit__(self, kind, error, traceback) -> None:
        try:
            if error is not None:
                for write in self.pending:
                    write.cancel()
            self.thread.shutdown(wait=True)
        finally:
            # After a failure, the write under way when it happened counts if it
            # committed: the next run resumes after it.
            while self.pending and _committed(self.pending[0]):
                self._finish_oldest()

    def _finish_oldest(self) -> None:
        # Popped only once committed: an interrupted wait leaves it to __exit__.
        lists, rows = self.pending[0].result()
        self.pending.popleft()
        self.state.update(lists_written=self.state["lists_written"] + lists,
                          rows_written=self.state["rows_written"] + rows)

    def _write(self, changes: ListChanges, valid_through: int, progress: dict,
               previous: Future | None) -> tuple[int, int]:
        # Not after a failed write: this block's counts would claim the lists before it.
        if previous is not None:
            previous.result()
        rows = db.neighbours.write_lists(self.engine, SPACE_IDS[self.space], changes, self.job_id,
                                 progress, valid_through)
        return changes.lists(), rows


def _committed(write: Future) -> bool:
    """Return whether a submitted write has finished without error."""
    return write.done() and not write.cancelled() and write.exception() is None
