"""A generated corpus of awkward files: each ends 'failed' with a reason, or 'ok'."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image as PILImage

from jobs.features.job import run
from features_support import (AS_OTHER_USER, MODEL_CACHE, ROOT, image_rows, open_tmp,
                              picture, write_jpeg)

MAX_PIXELS = 100_000  # small, so that a 400x300 photo trips the guard


def jpeg_bytes(seed=1, mode="RGB", **save):
    buffer = io.BytesIO()
    picture(seed).convert(mode).save(buffer, "JPEG", quality=90, **save)
    return buffer.getvalue()


def with_size(data: bytes, width: int, height: int, precision: int = 8) -> bytes:
    """Return a JPEG whose frame header (SOF) claims other dimensions or bit depth."""
    at = data.index(b"\xff\xc0")  # baseline SOF0: marker, length(2), precision, h(2), w(2)
    return (data[:at + 4] + bytes([precision]) + height.to_bytes(2, "big")
            + width.to_bytes(2, "big") + data[at + 9:])


def png_bytes(mode):
    buffer = io.BytesIO()
    if mode == "I;16":
        PILImage.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20)\
            .save(buffer, "PNG")
    else:
        picture(2).save(buffer, "PNG")
    return buffer.getvalue()


def corpus() -> dict[bytes, tuple[str, str | None]]:
    """Return {relative path as bytes: (content, expected status, words of the error)}."""
    good = jpeg_bytes(1)
    return {
        b"empty.jpg": (b"", "failed", "empty"),
        b"truncated.jpg": (good[:len(good) // 2], "failed", "truncated"),
        b"text.jpg": (b"hello, I am a text file\n", "failed", "not a JPEG"),
        b"png.jpg": (png_bytes("RGB"), "failed", "not a JPEG"),
        b"png16bit.JPG": (png_bytes("I;16"), "failed", "not a JPEG"),
        b"sof12bit.jpg": (with_size(good, 96, 72, precision=12), "failed", "bit depth"),
        b"bomb.jpg": (with_size(good, 60000, 60000), "failed", "too many pixels"),
        b"cmyk.jpg": (jpeg_bytes(3, "CMYK"), "ok", None),
        b"gray.jpeg": (jpeg_bytes(4, "L"), "ok", None),
        b"progressive.jpg": (jpeg_bytes(5, progressive=True), "ok", None),
        b"caf\xe9 latin-1 name.jpg": (jpeg_bytes(6), "ok", None),
        b"dir/\xff\xfe.jpg": (jpeg_bytes(7), "ok", None),
    }


def test_bad_files_never_stop_a_run(settings_for, database_url, tmp_path, extractor):
    root = tmp_path / "images"
    files = corpus()
    for rel, (content, _, _) in files.items():
        path = os.fsencode(root) + b"/" + rel
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as file:
            file.write(content)
    write_jpeg(root / "big.jpg", 8, width=400, height=300)  # 120,000 pixels
    settings = settings_for(database_url=database_url, image_root=root, batch_size=3,
                            max_image_pixels=MAX_PIXELS)
    counts = run(settings, quiet=True, extractor=extractor)
    expected_failed = sum(1 for _, status, _ in files.values() if status == "failed") + 1
    assert (counts["new"], counts["failed"]) == (len(files) + 1, expected_failed)
    rows = image_rows(database_url)
    for rel, (_, status, words) in files.items():
        row = rows[rel.decode("utf-8", "backslashreplace")]
        assert row["status"] == status, (rel, row["error"])
        if status == "failed":
            assert row["error"] and words.lower() in row["error"].lower(), (rel, row["error"])
            assert len(row["error"]) < 200
        else:
            assert row["error"] is None and row["width"] == 96 and row["height"] == 72
    assert rows["big.jpg"]["status"] == "failed"
    assert "too many pixels" in rows["big.jpg"]["error"]
    assert rows["caf\\xe9 latin-1 name.jpg"]["file_name"] == "caf\\xe9 latin-1 name.jpg"
    # Failed files are not retried while unchanged.
    counts = run(settings, quiet=True, extractor=extractor)
    assert counts["unchanged"] == len(files) + 1 and counts["failed"] == 0


def test_unreadable_file_fails_and_unreadable_folder_is_not_missing(settings_for,
                                                                    extractor):
    """Run the job as a user who cannot read one file and one folder (root reads all)."""
    with open_tmp() as tmp:
        root = tmp / "images"
        write_jpeg(root / "fine.jpg", 1)
        write_jpeg(root / "closed" / "inside.jpg", 3)
        url = f"sqlite:///{tmp / 'db' / 'images.sqlite3'}"
        # The first run registers closed/inside.jpg while it can still be read.
        run(settings_for(database_url=url, image_root=root), quiet=True,
            extractor=extractor)
        write_jpeg(root / "locked.jpg", 2)
        os.chmod(root / "locked.jpg", 0)
        os.chmod(root / "closed", 0)
        for folder in (tmp / "db", root):
            os.chmod(folder, 0o777)
        for name in os.listdir(tmp / "db"):
            os.chmod(tmp / "db" / name, 0o666)
        cache = tmp / "weights.h5"
        shutil.copyfile(MODEL_CACHE, cache)
        os.chmod(cache, 0o644)
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp), "DATABASE_URL": url,
               "IMAGE_ROOT": str(root), "MODEL_CACHE": str(cache), "LOG_LEVEL": "INFO"}
        try:
            result = subprocess.run(
                [*AS_OTHER_USER, sys.executable, "create_image_features.py"],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        finally:
            os.chmod(root / "closed", 0o755)
            os.chmod(root / "locked.jpg", 0o644)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "cannot read folder" in result.stderr
        rows = image_rows(url)
        assert rows["locked.jpg"]["status"] == "failed"
        assert rows["locked.jpg"]["error"] == "permission denied"
        assert rows["fine.jpg"]["status"] == "ok"
        assert rows["closed/inside.jpg"]["status"] == "ok"  # not marked missing
        assert "new 1, changed 0, unchanged 1, missing 0, failed 1" in result.stdout
