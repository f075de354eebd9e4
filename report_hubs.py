#!/usr/bin/env python3
"""Print the images that occur in an unusually large share of all neighbour lists.

    report_hubs.py [--space pool3|whitened] [--factor F] [--limit N]

An image occurs in about k lists on average; one in at least F times as many (default
10) is listed with its id, path, the lists it is in and their share of all lists.
Placeholders ("no image available"), colour charts and blank pages show up here first:
their paths are candidates for EXCLUDE_PATTERNS or EXCLUDE_FILE. Reads only.
"""
from __future__ import annotations

import argparse
import sys

from db.models import POOL3, SPACE_IDS
from runtime.jobrun import JobError, connect
from runtime.settings import load_settings

PROG = "report_hubs.py"


def parse_args(argv: list[str]) -> argparse.Namespace:
    from db.hubs import FACTOR
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", choices=tuple(SPACE_IDS), default=POOL3)
    parser.add_argument("--factor", type=float, default=FACTOR, metavar="F",
                        help=f"times the mean number of lists an image is in "
                             f"(default: {FACTOR:g})")
    parser.add_argument("--limit", type=int, default=100, metavar="N",
                        help="most images printed (default: 100)")
    args = parser.parse_args(argv)
    if not 0 < args.factor < float("inf"):
        parser.error(f"--factor must be more than 0, got {args.factor}")
    if args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from sqlalchemy.exc import SQLAlchemyError
    from db.hubs import find_hubs
    try:
        settings = load_settings()
        engine = connect(settings.database_url, read_only=True)
        try:
            with engine.connect() as connection:
                hubs, figures = find_hubs(connection, args.space, args.factor, args.limit)
        finally:
            engine.dispose()
    except (JobError, SQLAlchemyError, ValueError) as error:
        print(f"{PROG}: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"# {args.space}: {figures['lists']} lists, an image is in "
          f"{figures['mean_lists_per_image']:g} on average; listed: in at least "
          f"{figures['threshold']} ({figures['factor']:g} times as many)")
    print("id\tlists\tshare\tpath")
    for hub in hubs:
        print(f"{hub.image_id}\t{hub.lists}\t{hub.share:.3f}\t{hub.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
