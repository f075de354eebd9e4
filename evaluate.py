#!/usr/bin/env python3
"""Score the stored neighbour lists of every space against an archive's known pairs.

    evaluate.py GROUND_TRUTH.csv [--json] [--k N]

GROUND_TRUTH.csv has the columns path (relative to IMAGE_ROOT) and group (images of one
group are relevant to each other), and optionally role ("db" for database images, any
other value for queries). Prints, per space, mAP@k, recall@1/5/10 and precision@1/10 over
the queries, with the counts of queries scored and of CSV rows not found in the database
(listed). The database comes from DATABASE_URL (environment or .env); it is only read.
Exit status 0 when scored, 1 when the CSV or the database cannot be used, 2 for a bad
command line.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from runtime.cli import settings_or_none, setup_logging
from runtime.jobrun import JobError, connect, short_error

PROG = "evaluate.py"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("ground_truth", type=Path, metavar="GROUND_TRUTH.csv")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--k", type=int, default=100, metavar="N",
                        help="mAP over the first N entries of each list (default 100)")
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error(f"--k must be at least 1, got {args.k}")
    return args


def table(report) -> list[str]:
    """Return the report as lines of a table, a column per space."""
    lines = [f"{report.rows} rows, {report.queries} queries found in the database, "
             f"{len(report.not_found)} rows not found"]
    lines += [f"  not found: line {row.line}: {row.path}" for row in report.not_found[:20]]
    if len(report.not_found) > 20:
        lines.append(f"  ... and {len(report.not_found) - 20} more (--json lists all)")
    spaces = list(report.spaces)
    if not spaces:
        return lines + ["no space has lists yet: run group_images.py first"]
    names = list(report.spaces[spaces[0]])
    lines.append(f"{'':18}" + "".join(f"{space:>12}" for space in spaces))
    for name in names:
        values = [report.spaces[space].get(name) for space in spaces]
        lines.append(f"{name:18}" + "".join(
            f"{value:>12}" if isinstance(value, int) else
            f"{value:>12.4f}" if value is not None else f"{'-':>12}" for value in values))
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = settings_or_none(PROG)
    if settings is None:
        return 1
    setup_logging(settings.log_level, quiet=True)
    from jobs.evaluation.ground_truth import GroundTruthError, read_csv
    from jobs.evaluation.report import evaluate
    try:
        rows = read_csv(args.ground_truth)
        engine = connect(settings.database_url, read_only=True)
        try:
            with engine.connect() as connection:
                report = evaluate(connection, rows, args.k)
        finally:
            engine.dispose()
    except (GroundTruthError, JobError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except SQLAlchemyError as error:
        print(f"{PROG}: error: cannot read the database: {short_error(error)} (a "
              "database of an earlier version is brought up to date by group_images.py)",
              file=sys.stderr)
        return 1
    print(json.dumps(report.as_json(), indent=2) if args.json else "\n".join(table(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
