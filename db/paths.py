"""An image's path as stored and as hashed: one definition for the scan and the look-ups.

A file's identity is the sha256 of its relative path's raw bytes, as the file system
gives them. images.path keeps the same path as text: UTF-8, with each byte that is not
UTF-8 written as a \\xNN escape.
"""
from __future__ import annotations

import hashlib
import re
import sys

_FS_ENCODING = sys.getfilesystemencoding()
_ESCAPED_BYTE = re.compile(rb"\\x([0-9a-f]{2})")


def raw_path(name: str) -> bytes:
    """Return the raw bytes of a name the file system gave (os.fsencode, without its
    per-call overhead: the scan calls this for every file)."""
    return name.encode(_FS_ENCODING, "surrogateescape")


def stored_text(name: str) -> str:
    """Return a name from the file system as storable text; non-UTF-8 bytes become \\xNN."""
    return raw_path(name).decode("utf-8", errors="backslashreplace")


def path_hash(raw: bytes) -> str:
    """Return the sha256 hex digest under which images.path_hash indexes a path."""
    return hashlib.sha256(raw).hexdigest()


def text_hash(name: str) -> str:
    """Return the hash of a path given as the file system gives it (for tests, tools)."""
    return path_hash(raw_path(name))


def raw_forms(text: str) -> list[bytes]:
    """Return the raw paths a path shown as `text` (images.path) may stand for."""
    raw = text.encode("utf-8", "surrogateescape")
    # "\xNN" is either a byte that is not UTF-8, escaped by stored_text, or those four
    # characters in the name itself; the row's path hash tells which.
    if b"\\x" not in raw:
        return [raw]
    return [raw, _ESCAPED_BYTE.sub(lambda m: bytes([int(m.group(1), 16)]), raw)]


def hashes_of_stored_text(text: str) -> list[str]:
    """Return the hashes a path shown as `text` may be indexed under."""
    return [path_hash(raw) for raw in raw_forms(text)]


def file_path(text: str, hashed: str) -> bytes:
    """Return the raw path of an images row from its text and its path hash."""
    forms = raw_forms(text)
    return next((raw for raw in forms if path_hash(raw) == hashed), forms[0])
