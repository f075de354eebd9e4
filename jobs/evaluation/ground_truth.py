"""An archive's known pairs: a CSV of path,group[,role], checked and matched to images."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Connection

import db.images


class GroundTruthError(ValueError):
    """The CSV cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class Row:
    line: int
    path: str    # relative to IMAGE_ROOT, as the images table stores it
    group: str   # rows of one group are relevant to each other
    query: bool  # scored as a query
    db: bool     # may be retrieved as a relevant image


def read_csv(path: Path) -> list[Row]:
    """Return the rows of a path,group[,role] CSV; raise GroundTruthError when unusable.

    Without a role column every row is a query and a database image; with one, rows
    whose role is "db" are database images and all others queries."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            columns = [name.strip() for name in reader.fieldnames or []]
            missing = [name for name in ("path", "group") if name not in columns]
            if missing:
                raise GroundTruthError(f"{path}: the header must name the columns path and "
                                       f"group (missing: {', '.join(missing)}; found: "
                                       f"{', '.join(columns) or 'nothing'})")
            reader.fieldnames = columns
            with_role = "role" in columns
            rows, seen = [], {}
            for row in reader:
                line = reader.line_num
                values = {k: (v or "").strip() for k, v in row.items() if k is not None}
                if not values.get("path") or not values.get("group"):
                    raise GroundTruthError(f"{path}, line {line}: empty path or group")
                if values["path"] in seen:
                    raise GroundTruthError(f"{path}, line {line}: {values['path']} is "
                                           f"listed twice (first on line "
                                           f"{seen[values['path']]})")
                seen[values["path"]] = line
                is_db = not with_role or values.get("role") == "db"
                rows.append(Row(line, values["path"], values["group"],
                                query=not with_role or not is_db, db=is_db))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise GroundTruthError(f"{path}: cannot read it: {error}") from None
    if not rows:
        raise GroundTruthError(f"{path}: no rows below the header")
    if not any(row.query for row in rows):
        raise GroundTruthError(f"{path}: no query rows (every role is db)")
    return rows


def match(connection: Connection, rows: list[Row]) -> tuple[dict[str, int], list[Row]]:
    """Return the image id of each row's path, and the rows no image has."""
    ids, unknown = {}, []
    for row in rows:
        found = db.images.find_by_path(connection, row.path)
        if found:
            ids[row.path] = found[0].id
        else:
            unknown.append(row)
    if not ids:
        raise GroundTruthError("none of the CSV's paths is an image in the database; "
                               "paths must be relative to IMAGE_ROOT, as in the API's "
                               "image path")
    return ids, unknown
