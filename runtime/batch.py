"""What the two batch jobs share: the legacy command line, logging, progress reporting,
the database connection, one run at a time, the jobs row and how failures end."""
from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from db.engine import make_engine, upgrade
from db.jobs import finish_job, start_job
from db.locks import LockHeld, run_lock
from runtime.settings import Settings, load_settings

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


def summary_lines(label: str, counts: dict) -> list[str]:
    """Return a run's summary: its counts on one line, then its note if it has one."""
    lines = [f"{label}: " + ", ".join(f"{k} {v}" for k, v in counts.items()
                                      if k != "note")]
    return lines + ([f"note: {counts['note']}"] if "note" in counts else [])


def main(program: str, job: Callable[[], dict], summary: Callable[[dict], list[str]]) -> int:
    """Run a job for the command line: its summary lines on stdout and exit status 0; one
    line on stderr and 1 when it cannot run; 130 when interrupted."""
    try:
        counts = job()
    except JobError as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        return 130
    for line in summary(counts):
        print(line)
    return 0


def settings_or_none(program: str) -> Settings | None:
    """Return the settings, or None after printing in one line why they are wrong."""
    try:
        return load_settings()
    except ValueError as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        return None


def legacy_database_url(host: str, port: str, name: str, user: str, password: str) -> str:
    """Return the MariaDB URL for the original scripts' positional arguments."""
    try:
        port_number = int(port)
    except ValueError:
        raise ValueError(f"database port must be a number, got {port!r}") from None
    return URL.create("mysql+mysqlconnector", username=user, password=password, host=host,
                      port=port_number, database=name).render_as_string(hide_password=False)


def setup_logging(level: str, quiet: bool = False) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else getattr(logging, level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    # Alembic announces its plugins and an up-to-date schema, mysql-connector its
    # authentication plugin, at INFO on every run.
    for noisy in ("alembic", "mysql.connector"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.root.level))


class Progress:
    """A progress bar on a terminal, a log line every `interval` seconds otherwise."""

    def __init__(self, total: int, unit: str, quiet: bool = False, interval: float = 30.0):
        self.total, self.unit, self.interval = total, unit, interval
        self.done = 0
        self.started = self.last_log = time.monotonic()
        self.bar = None
        self.quiet = quiet
        if not quiet and sys.stderr.isatty():
            self.bar = tqdm(total=total, unit=unit, dynamic_ncols=True, smoothing=0.1)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if not self.quiet and now - self.last_log >= self.interval:
            self.last_log = now
            rate = self.done / max(now - self.started, 1e-9)
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            log.info("%d/%d %s (%.1f %s/s, about %s left)", self.done, self.total, self.unit,
                     rate, self.unit, _duration(left))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown time"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
