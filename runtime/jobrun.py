"""A job's run against its database: connecting, one run at a time, the jobs row, and
how failures end (one-line JobErrors)."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from db.engine import make_engine, upgrade
from db.jobs import finish_job, start_job
from db.locks import LockHeld, run_lock

log = logging.getLogger(__name__)


class JobError(Exception):
    """The run could not start or could not finish; the message is one line for the user."""


def short_error(error: BaseException) -> str:
    """Return the first line of a driver error, without SQLAlchemy's statement dump."""
    original = getattr(error, "orig", None) or error
    text = str(original).strip()
    return text.splitlines()[0] if text else type(original).__name__


def connect(database_url: str, read_only: bool = False) -> Engine:
    """Return an engine whose database answers; raise JobError when it does not."""
    try:
        engine = make_engine(database_url, read_only=read_only)
        with engine.connect():
            pass
    except ImportError as error:  # the URL names a driver that is not installed
        raise JobError(f"cannot connect to the database: its driver is not installed "
                       f"({error})") from None
    except (SQLAlchemyError, OSError, ValueError) as error:
        where = make_url(database_url).render_as_string(hide_password=True)
        raise JobError(f"cannot connect to the database {where}: {short_error(error)}") \
            from None
    return engine


@contextmanager
def one_run_at_a_time(engine: Engine, kind: str, program: str) -> Iterator[None]:
    """Hold the job's lock on the database; raise JobError while another run holds it."""
    try:
        with run_lock(engine, kind):
            yield
    except LockHeld:
        raise JobError(f"another {program} run is working on this database; nothing was "
                       "changed") from None


@dataclass
class JobRun:
    """A run's row in the jobs table; `counts` is what it records when it ends."""

    id: int
    counts: dict = field(default_factory=dict)


@contextmanager
def recorded(engine: Engine, kind: str) -> Iterator[JobRun]:
    """Bring the schema up to date, then record the run in the jobs table: 'running',
    then 'completed' or 'failed' with its counts and the error. Database errors leave as
    one-line JobErrors."""
    try:
        upgrade(engine)
        run = JobRun(start_job(engine, kind))
    except SQLAlchemyError as error:
        raise JobError(f"cannot prepare the database: {short_error(error)}") from None
    try:
        yield run
    except BaseException as error:  # KeyboardInterrupt too: the row must not say running
        message = "interrupted" if isinstance(error, KeyboardInterrupt) else \
            f"{type(error).__name__}: {error}"
        try:
            finish_job(engine, run.id, "failed", run.counts, message[:1000])
            unrecorded = ""
        except SQLAlchemyError:
            unrecorded = f" (its jobs row {run.id} still says running)"
            if not isinstance(error, SQLAlchemyError):
                log.warning("could not record the failed run in the jobs table")
        if isinstance(error, SQLAlchemyError):
            # One line: the cause, and whether the jobs row could say so.
            raise JobError(f"database error during the run: {short_error(error)}"
                           f"{unrecorded}") from error
        raise
    try:
        finish_job(engine, run.id, "completed", run.counts)
    except SQLAlchemyError as error:
        raise JobError(f"cannot record the completed run: {short_error(error)}") from error
