"""What a batch run needs from the command line: its logging, its summary, its exit
status, and the original scripts' positional database arguments."""
from __future__ import annotations

import logging
import sys
from typing import Callable

from sqlalchemy.engine import URL

from runtime.jobrun import JobError
from runtime.settings import Settings, load_settings


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
