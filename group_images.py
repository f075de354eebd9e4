#!/usr/bin/env python3
"""Bring every image's list of its k nearest neighbours (exact, Euclidean) up to date.

    group_images.py [--full] [--relearn] [--k N] [--batch-size N] [--dry-run]
                    [--scheduler ADDRESS] [--quiet]
    group_images.py <db host> <db port> <db name> <db user> <db password>

Lists are kept per space: pool3 (Euclidean on the stored vectors, the original distance)
and whitened (a space learned from the collection; WHITENED_DIMENSIONS, 0 for none).
Settings (DATABASE_URL, NEIGHBOURS_K, GROUPING_MEMORY_MB, ...) come from the environment
and .env; the second form is the original script's command line and still works. The
first run, and --full, compute every list; later runs only the work that the new,
changed and removed images make; a killed run is taken up where it stopped. Exit status
0 when the run completed, 1 when it could not run, 2 for a bad command line.
"""
from __future__ import annotations

import argparse
import sys

from runtime.cli import legacy_database_url, main as main_of_job, setup_logging, summary_lines
from runtime.settings import load_settings

PROG = "group_images.py"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("positional", nargs="*", metavar="DB",
                        help="legacy form: db host, port, name, user, password "
                             "(default: the DATABASE_URL setting)")
    parser.add_argument("--full", action="store_true",
                        help="recompute every list, not only what changed")
    parser.add_argument("--relearn", action="store_true",
                        help="learn the whitened space again from the current collection "
                             "and recompute its lists")
    parser.add_argument("--k", type=int, metavar="N",
                        help="neighbours per image (default: NEIGHBOURS_K)")
    parser.add_argument("--batch-size", type=int, metavar="N",
                        help="lists computed together and written in one transaction "
                             "(default: 2048; up to 8 times as many lists that an "
                             "incremental run only merges into)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print how much work a run would do and change nothing")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run on a Dask cluster: 'local' (one worker process per core "
                             "on this machine), 'local:N', or a scheduler address such as "
                             "tcp://host:8786 (default: DASK_SCHEDULER; empty: in-process)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress output; warnings, errors and the summary only")
    args = parser.parse_args(argv)
    if len(args.positional) not in (0, 5):
        parser.error("expected no positional arguments, or <db host> <db port> <db name> "
                     f"<db user> <db password>; got {len(args.positional)} arguments")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.k is not None and args.k < 1:
        parser.error(f"--k must be at least 1, got {args.k}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    overrides = {}
    try:
        if args.positional:
            overrides["DATABASE_URL"] = legacy_database_url(*args.positional)
        if args.k is not None:
            overrides["NEIGHBOURS_K"] = str(args.k)
        if args.scheduler is not None:
            overrides["DASK_SCHEDULER"] = args.scheduler
        settings = load_settings(overrides)
    except ValueError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    setup_logging(settings.log_level, args.quiet)
    from jobs.grouping.run import BLOCK_ROWS, run
    label = "dry run, nothing changed; would do" if args.dry_run else "done"
    return main_of_job(PROG, lambda: run(settings, full=args.full, dry_run=args.dry_run,
                                         quiet=args.quiet, relearn=args.relearn,
                                         block_rows=args.batch_size or BLOCK_ROWS),
                       lambda counts: summary(label, counts))


# Shown on lines of their own.
_HIDDEN = ("spaces", "note", "exclusions")


def summary(label: str, counts: dict) -> list[str]:
    """Return the summary: the run's counts, a line per space, then the note if any."""
    lines = summary_lines(label, {k: v for k, v in counts.items()
                                  if k == "note" or k not in _HIDDEN})
    spaces = [f"  {name}: " + (", ".join(f"{k} {v}" for k, v in state.items()
                                         if k not in _HIDDEN) or state.get("note", ""))
              for name, state in counts.get("spaces", {}).items()]
    change = counts.get("exclusions") or {}
    excluded = ([f"  excluded {change['excluded']} (newly {change['newly_excluded']}, "
                 f"included again {change['included_again']})"] if any(change.values())
                else [])
    return lines[:1] + spaces + excluded + lines[1:]


if __name__ == "__main__":
    sys.exit(main())
