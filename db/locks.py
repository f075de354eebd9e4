"""One run at a time of each batch job on a database.

Runs over a large archive take days, so a nightly cron job can start while the last one
still works; two feature runs would decode the same files and collide on new rows.
"""
from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)


class LockHeld(Exception):
    """Another run of the same job holds the database's lock."""


@contextmanager
def run_lock(engine: Engine, job: str) -> Iterator[None]:
    """Hold the lock of `job` on this database for the block; raise LockHeld if taken."""
    if engine.dialect.name == "sqlite":
        with _file_lock(Path(engine.url.database), job):
            yield
    else:
        with _server_lock(engine, job):
            yield


@contextmanager
def _file_lock(database: Path, job: str) -> Iterator[None]:
    # flock dies with the process, so a killed run never leaves a stale lock behind.
    with open(database.with_name(f"{database.name}.{job}.lock"), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(job) from None
        yield


@contextmanager
def _server_lock(engine: Engine, job: str) -> Iterator[None]:
    # GET_LOCK belongs to this connection: a killed run's connection closes and frees it.
    name = f"imagegroup.{engine.url.database}.{job}"[:64]
    with engine.connect() as connection:
        # The connection idles while the run works; the server must not drop it (and
        # the lock with it) after its default 8 hours.
        connection.execute(text("SET SESSION wait_timeout = 31536000"))
        if connection.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": name}).scalar() != 1:
            raise LockHeld(job)
        run_failed = True
        try:
            yield
            run_failed = False
        finally:
            try:
                connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
            except DBAPIError:
                # The connection is lost, and the lock with it. Dropped, not closed: a
                # close would try a ROLLBACK on it and raise over the run's own error.
                connection.invalidate()
                if not run_failed:
                    log.warning("the connection holding the %s run's lock was lost before "
                                "the run ended; another run could have started meanwhile",
                                job)
