"""Read a catalogue CSV file: its columns, and each row checked on its own."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from db.models import EXTERNAL_ID_LENGTH, title_key

# Columns with a meaning; every other column is kept in the record's extra fields.
JOIN_COLUMNS = ("path", "file_name")
RECORD_COLUMNS = ("external_id", "title", "url", "excluded")
URL_SCHEMES = ("http", "https")
TRUE_WORDS, FALSE_WORDS = {"1", "true", "yes"}, {"0", "false", "no", ""}
DELIMITERS = (",", ";", "\t")  # spreadsheets in many locales save with ; or tabs


class CsvError(Exception):
    """The file as a whole cannot be read; the message is one line for the user."""


@dataclass
class CsvRow:
    """One record of the file: where it starts and its cells by column name."""

    line: int
    cells: dict[str, str]

    @property
    def path(self) -> str:
        return self.cells.get("path", "")

    @property
    def file_name(self) -> str:
        return self.cells.get("file_name", "")


@dataclass
class BadRow:
    line: int
    reason: str


@dataclass
class CatalogueFile:
    """The file's columns, its rows that passed the checks of a row alone, the others."""

    columns: list[str]
    rows: list[CsvRow] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)

    @property
    def extra_columns(self) -> list[str]:
        return [c for c in self.columns if c not in JOIN_COLUMNS + RECORD_COLUMNS]


def record_values(row: CsvRow, catalogue: CatalogueFile) -> dict:
    """Return the record columns the file sets for this row (absent columns left out)."""
    values = {}
    for name in ("external_id", "title", "url"):
        if name in catalogue.columns:
            values[name] = row.cells[name] or None
    if "title" in values:
        values["title_key"] = title_key(values["title"])
    if "excluded" in catalogue.columns:
        values["excluded"] = row.cells["excluded"].strip().lower() in TRUE_WORDS
    if catalogue.extra_columns:
        extra = {name: row.cells[name] for name in catalogue.extra_columns
                 if row.cells[name] != ""}
        values["extra"] = json.dumps(extra, ensure_ascii=False, sort_keys=True) \
            if extra else None
    return values


def _row_problem(cells: dict[str, str]) -> str | None:
    """Return why a row is bad on its own, or None."""
    if not cells.get("path") and not cells.get("file_name"):
        return "neither path nor file_name is given"
    external_id = cells.get("external_id", "")
    if len(external_id) > EXTERNAL_ID_LENGTH:
        return f"external_id is longer than {EXTERNAL_ID_LENGTH} characters"
    if external_id != external_id.strip():
        return f"external_id {external_id!r} begins or ends with white space"
    url = cells.get("url", "")
    if url:
        try:
            parts = urlsplit(url)
        except ValueError as error:
            return f"url {url[:80]!r} cannot be read: {error}"
        if parts.scheme.lower() not in URL_SCHEMES or not parts.netloc:
            return (f"url {url[:80]!r} is not an http or https address "
                    f"(scheme {parts.scheme or 'missing'!r})")
    excluded = cells.get("excluded", "").strip().lower()
    if excluded not in TRUE_WORDS | FALSE_WORDS:
        return (f"excluded must be one of 1/0, true/false, yes/no or empty, "
                f"got {cells['excluded'][:40]!r}")
    return None


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")  # Excel writes UTF-8 with a byte-order mark
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise CsvError(f"{name} is not UTF-8 text (line {line}, byte {error.start}): "
                       "save it as CSV UTF-8") from None


def _delimiter(header_line: str) -> str:
    return max(DELIMITERS, key=header_line.count)


def parse(text: str, name: str = "the file") -> CatalogueFile:
    """Return the catalogue in CSV text; raise CsvError when the file cannot be used."""
    if not text.strip():
        raise CsvError(f"{name} is empty")
    reader = csv.reader(io.StringIO(text, newline=""),
                        delimiter=_delimiter(text.split("\n", 1)[0]), strict=True)
    try:
        header = next(reader)
    except csv.Error as error:
        raise CsvError(f"{name}, line 1: {error}") from None
    columns = [cell.strip() for cell in header]
    lower = [c.lower() for c in columns]
    # The known names in any case; the catalogue's own names kept as they are.
    columns = [c.lower() if c.lower() in JOIN_COLUMNS + RECORD_COLUMNS else c
               for c in columns]
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates or "" in columns:
        raise CsvError(f"{name}: the header has " + (
            f"repeated columns {', '.join(duplicates)}" if duplicates
            else "a column without a name"))
    if not set(JOIN_COLUMNS) & set(lower):
        raise CsvError(f"{name}: the header needs a column path (relative to IMAGE_ROOT) "
                       f"or file_name; it has {', '.join(columns)[:200]}")
    catalogue = CatalogueFile(columns)
    start = reader.line_num + 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise CsvError(f"{name}, line {start}: {error}") from None
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in record):
            continue  # blank lines, as spreadsheets leave at the end
        if len(record) != len(columns):
            catalogue.bad.append(BadRow(line, f"{len(record)} fields where the header has "
                                              f"{len(columns)}"))
            continue
        cells = dict(zip(columns, record))
        for key in JOIN_COLUMNS:
            if key in cells:
                cells[key] = cells[key].strip()
        problem = _row_problem(cells)
        if problem:
            catalogue.bad.append(BadRow(line, problem))
        else:
            catalogue.rows.append(CsvRow(line, cells))
    return catalogue


def read(path: Path) -> CatalogueFile:
    """Return the catalogue in the CSV file at `path`; raise CsvError when unusable."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CsvError(f"cannot read {path}: {error.strerror or error}") from None
    return parse(_decode(data, str(path)), str(path))
