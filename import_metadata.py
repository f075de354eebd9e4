#!/usr/bin/env python3
"""Import catalogue records from a CSV file and join them to the images.

    import_metadata.py CATALOGUE.csv [--dry-run] [--skip-bad]

The header names the columns: `path` (relative to IMAGE_ROOT) or `file_name` (where one
image has it) joins a row to its image; `external_id` (the catalogue's record id),
`title`, `url` (http or https) and `excluded` (1/0, true/false, yes/no) fill the record;
every other column is kept as an extra field. UTF-8 (with or without a byte-order mark),
separated by commas, semicolons or tabs. A re-import updates the records of the rows it
has, in the columns it has. All or nothing: one bad row (unknown image, ambiguous file
name, duplicate external id, bad URL) is reported with its line and nothing is changed,
unless --skip-bad. Exit status 0 when the import was applied (or the dry run read the
whole file), 1 when it could not run or a row is bad, 2 for a bad command line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runtime.cli import main as main_of_job, settings_or_none, setup_logging, summary_lines

PROG = "import_metadata.py"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path, metavar="CATALOGUE.csv",
                        help="the catalogue as a CSV file")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would change and the bad rows; change nothing")
    parser.add_argument("--skip-bad", action="store_true",
                        help="report the bad rows and import the good ones")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = settings_or_none(PROG)
    if settings is None:
        return 1
    setup_logging(settings.log_level)
    from jobs.catalogue.job import run
    label = "dry run, nothing changed; would import" if args.dry_run else "done"
    return main_of_job(PROG, lambda: run(settings, args.csv, dry_run=args.dry_run,
                                         skip_bad=args.skip_bad),
                       lambda counts: summary_lines(label, counts))


if __name__ == "__main__":
    sys.exit(main())
