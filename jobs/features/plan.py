"""Compare a walk of IMAGE_ROOT with the images table: what this run has to do."""
from __future__ import annotations

from dataclasses import dataclass, field

from db.images import KnownImage
from db.models import FAILED, MISSING, OK, PENDING
from jobs.features.scan import Scan, ScannedFile

# Kinds of work. NEW: no result yet (new file, or 'pending' after a killed run).
# CHANGED: size or mtime differ; the content hash decides. REAPPEARED: was 'missing'.
# RETRY: 'failed' and unchanged, retried on request. OUTDATED: unchanged, but its
# vector was made by an earlier model or decoding (numerics.vectors.OUTDATED_MODELS).
NEW, CHANGED, REAPPEARED, RETRY, OUTDATED = "new", "changed", "reappeared", "retry", "outdated"
KINDS = (NEW, CHANGED, REAPPEARED, RETRY, OUTDATED)


@dataclass(frozen=True, slots=True)
class Work:
    """One file to read: its kind, and its row when it has one."""

    kind: str
    file: ScannedFile
    known: KnownImage | None


@dataclass(frozen=True, slots=True)
class FileTask:
    """One file to process, with what the database knows of it."""

    image_id: int
    path: str  # absolute path to open (os.scandir's str form, surrogateescape)
    kind: str  # NEW | CHANGED | REAPPEARED | RETRY
    prior_status: str
    size: int  # as the walk saw it; recorded when the file cannot be read
    mtime_ns: int
    stored_hash: str | None = None  # content hash on record
    reuse: bool = False  # same content hash as on record: keep the stored result
                         # (never for a vector of an earlier model)
    has_features: bool = False
    # An image of a IIIF collection: fetched from `url` (conditionally with the
    # validators of the last fetch) instead of read from `path`.
    url: str | None = None
    etag: str | None = None
    last_modified: str | None = None


@dataclass
class Plan:
    """What a run does: files to read (in walk order), rows to mark missing, the rest."""

    work: list[Work] = field(default_factory=list)
    deferred: int = 0  # files left for a later run by --limit
    missing: list[int] = field(default_factory=list)  # ids of rows whose file is gone
    unchanged: int = 0  # same size and mtime: nothing to do

    def counts(self) -> dict[str, int]:
        """Return how many files of each kind the plan holds."""
        counts = {kind: 0 for kind in KINDS}
        for item in self.work:
            counts[item.kind] += 1
        return {**counts, "missing": len(self.missing), "unchanged": self.unchanged,
                "deferred": self.deferred}


def make_plan(scan: Scan, known: dict[str, KnownImage], *, retry_failed: bool = False,
              limit: int | None = None, paths: dict[int, str] | None = None,
              outdated: frozenset[int] = frozenset()) -> Plan:
    """Return the plan for `scan` against the `known` rows; `outdated` holds the ids
    whose stored vectors an earlier model or decoding made.

    Rows under a folder the walk could not read are not marked missing: an unreadable
    folder is a problem to fix, not a deletion. `paths` (id -> stored path) is needed only
    when the scan has unreadable folders.
    """
    plan = Plan()
    for file in scan.files:
        row = known.get(file.path_hash)
        if row is None or row.status == PENDING:
            plan.work.append(Work(NEW, file, row))
        elif row.status == MISSING:
            plan.work.append(Work(REAPPEARED, file, row))
        elif row.status == FAILED and retry_failed:
            plan.work.append(Work(RETRY, file, row))
        elif row.size == file.size and row.mtime_ns == file.mtime_ns:
            if row.status == OK and row.id in outdated:
                plan.work.append(Work(OUTDATED, file, row))
            else:
                plan.unchanged += 1
        else:
            plan.work.append(Work(CHANGED, file, row))
    gone = gone_ids(scan, known)
    if scan.unreadable_dirs and gone:
        if paths is None:
            raise ValueError("paths of the gone rows are needed when folders were unreadable")
        prefixes = tuple("" if d == "" else d + "/" for d in scan.unreadable_dirs)
        gone = [id_ for id_ in gone if not paths[id_].startswith(prefixes)]
    plan.missing = sorted(gone)
    if limit is not None and len(plan.work) > limit:
        plan.deferred = len(plan.work) - limit
        del plan.work[limit:]
    return plan


def gone_ids(scan: Scan, known: dict[str, KnownImage]) -> list[int]:
    """Return the ids of present rows whose file the walk did not find."""
    seen = {file.path_hash for file in scan.files}
    return [row.id for path_hash, row in known.items()
            if row.status != MISSING and path_hash not in seen]
