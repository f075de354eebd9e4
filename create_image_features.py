#!/usr/bin/env python3
"""Compute Inception v3 features for new and changed JPEG files under IMAGE_ROOT.

    create_image_features.py [IMAGE_ROOT] [--batch-size N] [--limit N] [--dry-run]
                             [--retry-failed] [--scheduler ADDRESS] [--quiet]
    create_image_features.py <image root> <db host> <db port> <db name> <db user> <db password>

Settings (DATABASE_URL, IMAGE_ROOT, BATCH_SIZE, ...) come from the environment and .env;
the second form is the original scripts' command line and still works. A rerun does only
the new work. Results are committed batch by batch: a killed run loses at most its open
batch, leaves its row in the jobs table at 'running', and the next run finishes its work.
Exit status 0 when the run completed (some files may have failed), 1 when it could not
run, 2 for a bad command line.
"""
from __future__ import annotations

import argparse
import os
import sys

from runtime.cli import legacy_database_url, main as main_of_job, setup_logging, summary_lines
from runtime.settings import load_settings

PROG = "create_image_features.py"
# TensorFlow's C++ start-up chatter (oneDNN, CPU features) drowns cron mail; warnings stay.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("positional", nargs="*", metavar="IMAGE_ROOT",
                        help="folder of JPEG files (default: the IMAGE_ROOT setting); or the "
                             "legacy form: image root, db host, port, name, user, password")
    parser.add_argument("--batch-size", type=int, metavar="N",
                        help="images per model batch and per commit (default: BATCH_SIZE)")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="process at most N new or changed files in this run")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be done and change nothing")
    parser.add_argument("--retry-failed", action="store_true",
                        help="decode again the files that failed before, even if unchanged")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run on a Dask cluster: 'local' (one worker process per core "
                             "on this machine), 'local:N', or a scheduler address such as "
                             "tcp://host:8786 (default: DASK_SCHEDULER; empty: in-process)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress output; warnings, errors and the summary only")
    args = parser.parse_args(argv)
    if len(args.positional) not in (0, 1, 6):
        parser.error("expected IMAGE_ROOT alone, or <image root> <db host> <db port> "
                     f"<db name> <db user> <db password>; got {len(args.positional)} arguments")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 0:
        parser.error(f"--limit must be 0 or more, got {args.limit}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    overrides = {}
    try:
        if args.positional:
            # From the caller's folder, as the original script took it (settings resolve
            # relative paths from the project folder).
            overrides["IMAGE_ROOT"] = os.path.abspath(args.positional[0])
        if len(args.positional) == 6:
            overrides["DATABASE_URL"] = legacy_database_url(*args.positional[1:])
        if args.batch_size is not None:
            overrides["BATCH_SIZE"] = str(args.batch_size)
        if args.scheduler is not None:
            overrides["DASK_SCHEDULER"] = args.scheduler
        settings = load_settings(overrides)
    except ValueError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    setup_logging(settings.log_level, args.quiet)
    from jobs.features.job import run  # after logging: the model import logs
    label = "dry run, nothing changed; would process" if args.dry_run else "done"
    return main_of_job(PROG, lambda: run(settings, quiet=args.quiet, dry_run=args.dry_run,
                                         limit=args.limit, retry_failed=args.retry_failed),
                       lambda counts: summary_lines(label, counts))


if __name__ == "__main__":
    sys.exit(main())
