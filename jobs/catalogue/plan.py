"""Join a catalogue file's rows to the images and work out what an import changes."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.engine import Connection

import db.catalogue
import db.images
from jobs.catalogue.csv_file import BadRow, CatalogueFile, CsvRow, record_values

EMPTY_RECORD = {name: None for name in db.catalogue.RECORD_FIELDS} | {"excluded": False}


@dataclass
class Change:
    """What one good row does to its image's record."""

    line: int
    image_id: int
    path: str
    before: dict | None  # the stored record, None where there is none
    after: dict          # every field of the record once imported

    @property
    def differences(self) -> dict[str, tuple]:
        before = self.before or EMPTY_RECORD
        return {name: (before[name], self.after[name]) for name in db.catalogue.RECORD_FIELDS
                if name != "title_key" and before[name] != self.after[name]}


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)  # new or changed records
    unchanged: int = 0
    bad: list[BadRow] = field(default_factory=list)

    @property
    def new(self) -> list[Change]:
        return [c for c in self.changes if c.before is None]

    @property
    def updated(self) -> list[Change]:
        return [c for c in self.changes if c.before is not None]

    def counts(self) -> dict[str, int]:
        return {"new": len(self.new), "updated": len(self.updated),
                "unchanged": self.unchanged, "bad": len(self.bad)}


def _resolve(connection: Connection, rows: list[CsvRow]) -> tuple[dict[int, int], list[BadRow]]:
    """Return each row's image id (by line) and the rows that name no single image."""
    by_path = db.images.ids_by_path(connection, [r.path for r in rows if r.path])
    by_name = db.images.ids_by_file_name(connection, [r.file_name for r in rows if not r.path])
    images, bad = {}, []
    for row in rows:
        if row.path:
            if row.path in by_path:
                images[row.line] = by_path[row.path]
            else:
                bad.append(BadRow(row.line, f"unknown image: no image has the path "
                                            f"{row.path[:200]!r} under IMAGE_ROOT"))
            continue
        found = by_name.get(row.file_name, [])
        ids = [image_id for image_id, _ in found]
        # A moved file leaves a 'missing' image of its name behind: the name is
        # unambiguous while one image with it is present, or one only is stored.
        present = [image_id for image_id, missing in found if not missing]
        if not ids:
            bad.append(BadRow(row.line, f"unknown image: no image has the file name "
                                        f"{row.file_name[:200]!r}"))
        elif len(present) > 1 or (not present and len(ids) > 1):
            shown = ", ".join(map(str, ids[:5])) + (", ..." if len(ids) > 5 else "")
            bad.append(BadRow(row.line, f"ambiguous file name {row.file_name[:200]!r}: "
                                        f"{len(ids)} images have it (ids {shown}); give "
                                        "the path instead"))
        else:
            images[row.line] = (present or ids)[0]
    return images, bad


def _repeated(rows: list[CsvRow], key, what: str) -> dict[int, str]:
    """Return a reason by line for every row whose key (not None) another row shares."""
    lines: dict = {}
    for row in rows:
        value = key(row)
        if value is not None:
            lines.setdefault(value, []).append(row.line)
    reasons = {}
    for value, where in lines.items():
        if len(where) > 1:
            for line in where:
                others = ", ".join(str(n) for n in where if n != line)
                reasons[line] = f"{what(value)} is also on line {others}"
    return reasons


def make_plan(connection: Connection, catalogue: CatalogueFile) -> Plan:
    """Return what importing the file would change, and its bad rows with the reasons."""
    plan = Plan(bad=list(catalogue.bad))
    images, unresolved = _resolve(connection, catalogue.rows)
    plan.bad += unresolved
    rows = [row for row in catalogue.rows if row.line in images]
    stored = db.catalogue.stored_records(connection, images.values())
    after = {row.line: {**(stored.get(images[row.line]) or EMPTY_RECORD),
                        **record_values(row, catalogue)} for row in rows}
    # A row that names the same image as another, or gives the same external id, is
    # bad with all its partners: which of them is right only the catalogue can say.
    paths = db.images.paths_of(connection, images.values())
    repeated = _repeated(rows, lambda r: images[r.line],
                         lambda i: f"the same image ({paths[i][:200]!r})")
    repeated.update(_repeated(rows, lambda r: after[r.line]["external_id"],
                              lambda e: f"duplicate external_id {e[:80]!r}"))
    plan.bad += [BadRow(line, reason) for line, reason in repeated.items()]
    rows = [row for row in rows if row.line not in repeated]
    holders = db.catalogue.holders_of(connection, [after[r.line]["external_id"] for r in rows
                                            if after[r.line]["external_id"] is not None])
    while True:
        # An external id stored for an image this import leaves alone (or leaves its id
        # to) cannot go to another; a bad row dropped can cause another such clash.
        final = {images[r.line]: after[r.line]["external_id"] for r in rows}
        clashes = []
        for row in rows:
            external_id = after[row.line]["external_id"]
            holder = holders.get(external_id) if external_id is not None else None
            if holder is not None and holder != images[row.line] and \
                    final.get(holder, external_id) == external_id:
                clashes.append(BadRow(row.line, f"duplicate external_id "
                                                f"{external_id[:80]!r}: image {holder} "
                                                "already has it"))
        if not clashes:
            break
        plan.bad += clashes
        dropped = {bad.line for bad in clashes}
        rows = [row for row in rows if row.line not in dropped]
    for row in rows:
        image_id = images[row.line]
        before = stored.get(image_id)
        if before == after[row.line]:
            plan.unchanged += 1
        else:
            plan.changes.append(Change(row.line, image_id, paths[image_id], before,
                                       after[row.line]))
    plan.bad.sort(key=lambda bad: bad.line)
    return plan


def apply(connection: Connection, plan: Plan) -> None:
    """Write the plan's changes through `connection` (the caller's transaction)."""
    freed = [c.image_id for c in plan.updated
             if c.before["external_id"] is not None
             and c.before["external_id"] != c.after["external_id"]]
    db.catalogue.write_records(connection, {c.image_id: c.after for c in plan.new},
                        {c.image_id: c.after for c in plan.updated}, freed)
