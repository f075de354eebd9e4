"""Image files under IMAGE_ROOT and their thumbnails, cached on disk; the thumbnails of
IIIF images are made likewise from the image fetched from its server (a proxy with the
same cache)."""
from __future__ import annotations

import io
import math
import os
import re
import tempfile
from pathlib import Path

from flask import current_app
from PIL import Image, ImageOps, UnidentifiedImageError

from db.paths import file_path
from runtime.fetch import FetchOptions, Fetcher
from service.errors import ApiError

_HEX = re.compile(r"[0-9a-f]{1,64}")


def image_file(row, image_root: Path) -> Path:
    """Return the file of an image row, checked to lie under IMAGE_ROOT, or raise."""
    # Only the path stored by the feature job is used; nothing from the URL is.
    root = image_root.resolve()
    try:
        # The file system's own bytes: a name that is not UTF-8 is stored escaped.
        path = (root / os.fsdecode(file_path(row.path, row.path_hash))).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        raise ApiError(410, f"the file of image {row.id} cannot be opened", id=row.id)
    if not path.is_relative_to(root):
        current_app.logger.warning("image %s: path %r leaves IMAGE_ROOT", row.id, row.path)
        raise ApiError(403, f"the file of image {row.id} is not under IMAGE_ROOT", id=row.id)
    if not path.is_file():
        raise ApiError(410, f"the file of image {row.id} is missing from the archive",
                       id=row.id)
    return path


def _original(row, image_root: Path) -> Path | io.BytesIO:
    """Return the file of an image, or for a IIIF image its bytes fetched from its server
    (a level-0 server has no thumbnail sizes, so the service makes its own)."""
    if row.source_url is None:
        return image_file(row, image_root)
    fetched = _fetcher().get(row.source_url)
    if fetched.error:
        raise ApiError(502, f"the IIIF server did not give image {row.id}: {fetched.error}",
                       id=row.id)
    return io.BytesIO(fetched.data)


_fetchers: dict[FetchOptions, Fetcher] = {}


def _fetcher() -> Fetcher:
    options = FetchOptions.from_settings(current_app.config["SETTINGS"])
    if options not in _fetchers:
        _fetchers[options] = Fetcher(options)
    return _fetchers[options]


def content_version(row) -> str:
    """Return "<id>-<version>": changes whenever the image's content does."""
    version = row.content_hash if row.content_hash and _HEX.fullmatch(row.content_hash) \
        else f"s{row.size or 0}"
    return f"{row.id}-{version[:32]}"


def cache_key(row, size: int) -> str:
    """Return the cache file name of a thumbnail."""
    return f"{content_version(row)}-{size}.jpg"


def render(path: Path | io.BytesIO, size: int, max_pixels: int) -> bytes:
    """Return a JPEG of the image at `path`, upright, fitting in size x size."""
    try:
        with Image.open(path) as picture:
            if picture.width * picture.height > max_pixels:
                raise ApiError(422, f"the image has {picture.width}x{picture.height} "
                                    f"pixels, more than MAX_IMAGE_PIXELS={max_pixels}")
            # JPEG: decode at 1/2, 1/4 or 1/8 scale down to the thumbnail's own size (a
            # size x size box would keep a landscape photo's full scale).
            scale = min(1.0, size / max(picture.size))
            picture.draft("RGB", (math.ceil(picture.width * scale),
                                  math.ceil(picture.height * scale)))
            picture = ImageOps.exif_transpose(picture).convert("RGB")
            picture.thumbnail((size, size), Image.Resampling.LANCZOS)
            buffer = io.BytesIO()
            picture.save(buffer, "JPEG", quality=85, optimize=True)
            return buffer.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError) as error:
        # Pillow names the file it opened: a client sees its name, not the server's path.
        reason = str(error).replace(str(path), path.name)
        raise ApiError(422, f"the image file cannot be decoded: {reason}") from None


def thumbnail(row, size: int, image_root: Path, cache: Path,
              max_pixels: int) -> tuple[Path | None, bytes | None, str]:
    """Return (cached file or None, bytes or None, key) of an image's thumbnail."""
    key = cache_key(row, size)
    cached = cache / key
    if cached.is_file():
        return cached, None, key
    data = render(_original(row, image_root), size, max_pixels)
    stored = store(cache, key, data)
    return (stored, None, key) if stored is not None else (None, data, key)


def store(cache: Path, key: str, data: bytes) -> Path | None:
    """Write `data` to the cache file `key` and return its path (None if not writable)."""
    temp = None
    try:
        cache.mkdir(parents=True, exist_ok=True)
        # Write then rename: a concurrent reader sees no file or a whole one.
        with tempfile.NamedTemporaryFile(dir=cache, prefix=".tmp-", delete=False) as out:
            temp = out.name
            out.write(data)
        os.replace(temp, cache / key)
    except OSError as error:
        current_app.logger.warning("thumbnail cache %s not writable: %s", cache, error)
        if temp is not None:
            Path(temp).unlink(missing_ok=True)  # a full disk must not fill up further
        return None
    return cache / key


def trim(cache: Path, limit_bytes: int) -> None:
    """Delete the least recently written files of `cache` until it holds at most
    `limit_bytes`; files that other workers delete meanwhile are skipped."""
    entries = []
    with os.scandir(cache) as scan:
        for entry in scan:
            if entry.name.startswith(".tmp-"):  # being written by a worker
                continue
            try:
                stat = entry.stat()
            except OSError:
                continue
            entries.append((stat.st_mtime_ns, stat.st_size, entry.path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= limit_bytes:
            break
        Path(path).unlink(missing_ok=True)
        total -= size
