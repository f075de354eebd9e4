"""Images left out of the grouping (placeholders, colour charts, blank pages).

An excluded image gets no list and appears in no list, in every space. excluded_ids()
is the one place that gathers the set, from every source: the glob patterns of
EXCLUDE_PATTERNS and EXCLUDE_FILE, and the catalogue's `excluded` column
(import_metadata.py).

The grouping job calls sync() before it reads the flags: in one transaction it stores
the set in grouping_exclusions and sets needs_grouping on every image whose exclusion
changed. From there the run treats those images as it treats any flagged image
(grouping/plan.py): a newly excluded one as an image that left (its lists deleted, every
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
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from db.models import CatalogueRecord, GroupingExclusion, Image, utcnow

_PAGE = 50_000   # image rows per read: paths are read in keyset pages, never all at once
_IN_CHUNK = 1000


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
        last = 0
        query = select(Image.id, Image.path).order_by(Image.id).limit(_PAGE)
        while True:
            rows = connection.execute(query.where(Image.id > last)).all()
            for image_id, path in rows:
                pattern = patterns.match(path)
                if pattern is not None:
                    found[image_id] = f"pattern {pattern}"
            if len(rows) < _PAGE:
                break
            last = rows[-1][0]
    for (image_id,) in connection.execute(select(CatalogueRecord.image_id)
                                          .where(CatalogueRecord.excluded)):
        found.setdefault(image_id, "catalogue")
    return found


def stored(connection: Connection) -> dict[int, str | None]:
    """Return {image id: why} of the images the latest run excluded."""
    return dict(connection.execute(select(GroupingExclusion.image_id,
                                          GroupingExclusion.reason)).all())


def stored_ids(engine: Engine) -> np.ndarray:
    """Return the ids the latest run excluded, ascending."""
    with engine.connect() as connection:
        return np.array(sorted(stored(connection)), dtype=np.int64)


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
    now, before = excluded_ids(connection, settings), stored(connection)
    change = Change(np.array(sorted(now), dtype=np.int64),
                    sorted(now.keys() - before.keys()), sorted(before.keys() - now.keys()))
    return now, before, change


def sync(engine: Engine, settings) -> Change:
    """Store the images excluded now and flag those whose exclusion changed, in one
    transaction; return the change."""
    with engine.begin() as connection:
        now, before, change = compare(connection, settings)
        flagged = change.newly_excluded + change.included_again
        for start in range(0, len(flagged), _IN_CHUNK):
            # updated_at kept: the image itself did not change (the feature job's
            # changes are told apart by it).
            connection.execute(update(Image)
                               .where(Image.id.in_(flagged[start:start + _IN_CHUNK]))
                               .values(needs_grouping=True, updated_at=Image.updated_at))
        for start in range(0, len(change.included_again), _IN_CHUNK):
            connection.execute(delete(GroupingExclusion).where(GroupingExclusion.image_id.in_(
                change.included_again[start:start + _IN_CHUNK])))
        if change.newly_excluded:
            moment = utcnow()
            connection.execute(insert(GroupingExclusion), [
                {"image_id": i, "reason": now[i], "excluded_at": moment}
                for i in change.newly_excluded])
        for image_id in now.keys() & before.keys():
            if now[image_id] != before[image_id]:  # still excluded, by another pattern
                connection.execute(update(GroupingExclusion)
                                   .where(GroupingExclusion.image_id == image_id)
                                   .values(reason=now[image_id]))
    return change
