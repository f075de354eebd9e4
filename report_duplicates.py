#!/usr/bin/env python3
"""Write the near-duplicate groups of the stored neighbour lists as CSV.

    report_duplicates.py [--max-distance X] [--space pool3|whitened|augmented]
        [--output FILE]

Two images are near-duplicates when one is in the other's list at a distance of at most
X (default: DUPLICATE_DISTANCE in pool3, the calibrated one of runtime/distances.py in
the other spaces; bench/results/duplicates.md); a
group is a connected component of such pairs, so chains of copies form one group.
Columns: group (1 = the largest), image_id, path, external_id (the catalogue's record id,
empty without one), distance (to the group's first image, in the space). Groups come
largest first. Reads only; exit status 0, 1 when the database cannot be read, 2 for a
bad command line.
"""
from __future__ import annotations

import argparse
import csv
import sys

from db.models import POOL3, SPACE_IDS
from runtime.cli import settings_or_none
from runtime.distances import duplicate_distance
from runtime.jobrun import JobError, connect

PROG = "report_duplicates.py"
COLUMNS = ("group", "image_id", "path", "external_id", "distance")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-distance", type=float, metavar="X",
                        help="largest distance of a near-duplicate pair "
                             "(default: DUPLICATE_DISTANCE in pool3, the space's "
                             "calibrated one in the others)")
    parser.add_argument("--space", choices=tuple(SPACE_IDS), default=POOL3,
                        help="the lists to read (default: pool3; X is a distance there)")
    parser.add_argument("--output", metavar="FILE", help="CSV file (default: stdout)")
    args = parser.parse_args(argv)
    if args.max_distance is not None and not 0 <= args.max_distance < float("inf"):
        parser.error(f"--max-distance must be 0 or more, got {args.max_distance}")
    return args


def write_groups(rows, file) -> None:
    writer = csv.writer(file)
    writer.writerow(COLUMNS)
    for number, members in enumerate(rows, 1):
        for member in members:
            writer.writerow((number, member.image_id, member.path, member.external_id or "",
                             f"{member.distance:.6g}"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = settings_or_none(PROG)
    if settings is None:
        return 1
    from db.duplicates import describe, find_groups
    from sqlalchemy.exc import SQLAlchemyError
    max_distance = (duplicate_distance(args.space, settings.duplicate_distance)
                    if args.max_distance is None else args.max_distance)
    try:
        engine = connect(settings.database_url, read_only=True)
        try:
            with engine.connect() as connection:
                groups = describe(connection, find_groups(connection, args.space,
                                                          max_distance), args.space)
        finally:
            engine.dispose()
    except (JobError, SQLAlchemyError, ValueError) as error:
        print(f"{PROG}: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    if args.output:
        with open(args.output, "w", newline="", encoding="utf-8") as file:
            write_groups(groups, file)
    else:
        write_groups(groups, sys.stdout)
    print(f"{PROG}: {len(groups)} groups, {sum(map(len, groups))} images within "
          f"{max_distance:g} in {args.space}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
