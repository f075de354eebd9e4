"""Images left out of the grouping (placeholders, colour charts, blank pages).

An excluded image gets no list and appears in no list, in every space. excluded_ids()
is the one place that gathers the set, from every source: the glob patterns of
EXCLUDE_PATTERNS and EXCLUDE_FILE, and the catalogue's `excluded` column
(import_metadata.py).

The grouping job calls sync() before it reads the flags: in one transaction it stores
the set in grouping_exclusions and sets needs_grouping on every image whose exclusion
changed. From there the run treats those images as it treats any flagged image
(jobs/grouping/plan.py): a newly excluded one as an image that left (its lists deleted, every
list holding it recomputed), one included again as a new image (its lists computed, and
merged into every list it now enters). The flags are cleared only when the run
completes, so a killed run leaves them for the next, which converges on the same lists
as a full run: the flags of two runs' changes add up, whatever the set did in between.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Connection, Engine

from db import catalogue, exclusions, images


@dataclass
class Patterns:
    """Glob patterns: those with a / match the relative path, the others the file name."""

    patterns: tuple[str, ...]
    _path: re.Pattern | None = field(init=False, default=None)
    _name: re.Pattern | None = field(init=False, default=None)

    def __post_init__(self):
        by_path = [p for p in self.patterns if "/" in p]
        by_name = [p for p in self.patterns if "/" not in p]
        # One regular expression per kind: a path is tested once, not once per pattern.
        if by_path:
            self._path = re.compile("|".join(fnmatch.translate(p) for p in by_path))
        if by_name:
            self._name = re.compile("|".join(fnmatch.translate(p) for p in by_name))

    def match(self, path: str) -> str | None:
        """Return the first pattern that matches the relative POSIX path, or None."""
        name = path.rsplit("/", 1)[-1]
        if not ((self._path and self._path.match(path))
                or (self._name and self._name.match(name))):
            return None
        return next(p for p in self.patterns
                    if fnmatch.fnmatchcase(path if "/" in p else name, p))


def load_patterns(settings) -> Patterns:
    """Return the patterns of EXCLUDE_PATTERNS and EXCLUDE_FILE; raise ValueError when
    the file cannot be read."""
    patterns = list(settings.exclude_patterns)
    if settings.exclude_file is not None:
        path = Path(settings.exclude_file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"EXCLUDE_FILE {path} cannot be read: {error}") from None
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                patterns.append(line)
    # A leading ./ or / is how people write "from the root"; paths are stored without.
    return Patterns(tuple(dict.fromkeys(p.removeprefix("./").lstrip("/") for p in patterns)))


def excluded_ids(connection: Connection, settings) -> dict[int, str]:
    """Return {image id: why} of every image to leave out of the grouping now."""
    patterns = load_patterns(settings)
    found: dict[int, str] = {}
    if patterns.patterns:
        for image_id, path in images.paths_in_id_order(connection):
            pattern = patterns.match(path)
            if pattern is not None:
                found[image_id] = f"pattern {pattern}"
    for image_id in catalogue.excluded_ids(connection):
        found.setdefault(image_id, "catalogue")
    return found


@dataclass
class Change:
    excluded: np.ndarray        # every image excluded now, ascending
    newly_excluded: list[int]
    included_again: list[int]

    def counts(self) -> dict:
        return {"excluded": len(self.excluded), "newly_excluded": len(self.newly_excluded),
                "included_again": len(self.included_again)}


def compare(connection: Connection, settings) -> tuple[dict[int, str], dict, Change]:
    """Return (excluded now, stored, the change between them), reading only."""
    now, before = excluded_ids(connection, settings), exclusions.stored(connection)
    change = Change(np.array(sorted(now), dtype=np.int64),
                    sorted(now.keys() - before.keys()), sorted(before.keys() - now.keys()))
    return now, before, change


def sync(engine: Engine, settings) -> Change:
    """Store the images excluded now and flag those whose exclusion changed, in one
    transaction; return the change."""
    with engine.begin() as connection:
        now, before, change = compare(connection, settings)
        exclusions.store(connection, now, before)
    return change
