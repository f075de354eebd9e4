"""Walk IMAGE_ROOT and list its JPEG files with their identity, size and mtime."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from db.paths import path_hash, raw_path, stored_text

log = logging.getLogger(__name__)

JPEG_SUFFIXES = (".jpg", ".jpeg")
# MariaDB's images.file_name is VARCHAR(255); escaped non-UTF-8 names can be longer.
FILE_NAME_MAX = 255


@dataclass(frozen=True, slots=True)
class ScannedFile:
    """One JPEG file found under IMAGE_ROOT."""

    rel: str  # POSIX path relative to the root, as os.scandir gives it (surrogateescape)
    path_hash: str  # sha256 hex of the relative path's raw bytes: the file's identity
    size: int
    mtime_ns: int

    @property
    def text(self) -> str:
        """Return the relative path as storable text; non-UTF-8 bytes become \\xNN escapes."""
        return stored_text(self.rel)

    @property
    def file_name(self) -> str:
        return stored_text(self.rel.rpartition("/")[2])[:FILE_NAME_MAX]


@dataclass
class Scan:
    """The result of a walk: the files and the folders that could not be read."""

    files: list[ScannedFile]
    unreadable_dirs: list[str]  # relative POSIX paths, storable text


def is_jpeg_name(name: str) -> bool:
    return name.lower().endswith(JPEG_SUFFIXES)


def scan(root: Path) -> Scan:
    """Return every JPEG file under `root` in a stable order; unreadable folders are skipped."""
    files: list[ScannedFile] = []
    unreadable: list[str] = []
    # A stack, not recursion: 100,000s of files in deep trees, walked once per run.
    stack = [("", os.fspath(root))]
    real_root = os.path.realpath(root)
    while stack:
        prefix, top = stack.pop()
        try:
            with os.scandir(top) as iterator:
                entries = sorted(iterator, key=lambda e: raw_path(e.name))
        except OSError as error:
            # A folder we cannot list is reported and skipped; the run goes on.
            log.warning("cannot read folder %s: %s", stored_text(top),
                        error.strerror or error)
            unreadable.append(stored_text(prefix.rstrip("/")))
            continue
        folders = []
        for entry in entries:
            rel = prefix + entry.name
            try:
                # Symlinked folders are not followed: no loops, nothing outside the root.
                if entry.is_dir(follow_symlinks=False):
                    folders.append((rel + "/", entry.path))
                elif is_jpeg_name(entry.name) and entry.is_file():
                    # The service serves only files inside the root; a link leading out
                    # would be grouped but never shown.
                    if entry.is_symlink() and not _inside(entry.path, real_root):
                        log.warning("skipping %s: links to a file outside IMAGE_ROOT",
                                    stored_text(rel))
                        continue
                    stat = entry.stat()
                    files.append(ScannedFile(rel, path_hash(raw_path(rel)),
                                             stat.st_size, stat.st_mtime_ns))
            except OSError as error:
                # Vanished between listing and stat, or a dangling symlink: not a file now.
                log.warning("skipping %s: %s", stored_text(rel), error.strerror or error)
        stack.extend(reversed(folders))
    return Scan(files=files, unreadable_dirs=unreadable)


def _inside(path: str, real_root: str) -> bool:
    """Return whether `path`, links resolved, lies under the resolved root."""
    return os.path.commonpath([os.path.realpath(path), real_root]) == real_root
