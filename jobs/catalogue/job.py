"""The import job: read the CSV file, plan against the database, apply all or nothing."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from sqlalchemy.exc import SQLAlchemyError

from jobs.catalogue import csv_file
from jobs.catalogue.plan import Plan, apply, make_plan
from runtime.jobrun import JobError, connect, one_run_at_a_time, recorded, short_error
from runtime.settings import Settings

PROG = "import_metadata.py"
KIND = "catalogue"  # the jobs table's kind of these runs


def report_bad(plan: Plan, out: TextIO) -> None:
    for bad in plan.bad:
        print(f"line {bad.line}: {bad.reason}", file=out)


def report_changes(plan: Plan, out: TextIO) -> None:
    """Print each new or changed record, one field per line."""
    for change in plan.changes:
        verb = "new record" if change.before is None else "update"
        print(f"line {change.line}: {verb} for image {change.image_id} "
              f"({change.path[:200]})", file=out)
        for name, (old, new) in change.differences.items():
            print(f"    {name}: {old!r} -> {new!r}", file=out)


def run(settings: Settings, csv_path: Path, *, dry_run: bool = False,
        skip_bad: bool = False, out: TextIO = sys.stdout,
        err: TextIO = sys.stderr) -> dict[str, int]:
    """Import the catalogue file and return the counts; raise JobError when it cannot
    run, or when a row is bad and skip_bad is not given (then nothing is changed)."""
    try:
        catalogue = csv_file.read(csv_path)
    except csv_file.CsvError as error:
        raise JobError(str(error)) from None
    engine = connect(settings.database_url, read_only=dry_run)
    try:
        if dry_run:
            try:
                with engine.connect() as connection:
                    plan = make_plan(connection, catalogue)
            except SQLAlchemyError as error:
                raise JobError(f"cannot read the database: {short_error(error)}") from None
            report_bad(plan, err)
            report_changes(plan, out)
            return plan.counts()
        with one_run_at_a_time(engine, KIND, PROG), recorded(engine, KIND) as job:
            # One transaction: the catalogue as read and the records written agree, and
            # a failure part way leaves the records as they were.
            with engine.begin() as connection:
                plan = make_plan(connection, catalogue)
                job.counts = plan.counts()
                report_bad(plan, err)
                if plan.bad and not skip_bad:
                    raise JobError(f"{len(plan.bad)} bad rows (listed above); nothing was "
                                   "changed. Correct them, or give --skip-bad to import "
                                   "the good rows")
                apply(connection, plan)
            return job.counts
    finally:
        engine.dispose()
