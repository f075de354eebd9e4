#!/usr/bin/env python3
"""Take a collection from IIIF Presentation manifests and collections (2.1 and 3.0).

    import_iiif.py SOURCE [--dry-run] [--max-depth N] [--max-manifests N]

SOURCE is a manifest or collection URL, or a local JSON file. Each canvas's image becomes
an image (keyed by its image service id, else its URL); create_image_features.py then
fetches the images over HTTP(S) and computes their features. A re-import adds new
canvases, marks removed ones missing and has changed ones computed again. Exit status 0
when the import was applied (or the dry run read the source), 1 when it could not run,
2 for a bad command line.
"""
from __future__ import annotations

import argparse
import sys

from runtime.cli import main as main_of_job, settings_or_none, setup_logging, summary_lines

PROG = "import_iiif.py"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("source", metavar="SOURCE",
                        help="a manifest or collection: URL or JSON file")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would change; change nothing")
    parser.add_argument("--max-depth", type=int, default=5,
                        help="levels of nested collections followed (default 5)")
    parser.add_argument("--max-manifests", type=int, default=10_000,
                        help="manifests read at most (default 10000)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = settings_or_none(PROG)
    if settings is None:
        return 1
    setup_logging(settings.log_level)
    from jobs.iiif_import.job import run
    label = "dry run, nothing changed; would import" if args.dry_run else "done"
    return main_of_job(PROG, lambda: run(settings, args.source, dry_run=args.dry_run,
                                         max_depth=args.max_depth,
                                         max_manifests=args.max_manifests),
                       lambda counts: summary_lines(label, counts))


if __name__ == "__main__":
    sys.exit(main())
