"""Helpers for the IIIF tests: the Image API validator's test image, registered beside a
fixture archive, and the Pillow reference that IIIF answers are compared with."""
from __future__ import annotations

import hashlib
import io
from datetime import datetime
from pathlib import Path

from iiif_validator.validator import ValidationInfo
from PIL import Image as PILImage, ImageOps
from sqlalchemy import func, select

from db.engine import make_engine, make_sessionmaker
from db.models import OK, Image
from db.paths import text_hash as path_hash

VALIDATOR_PATH = "iiif/validator grid.jpg"


def validator_grid() -> bytes:
    """Return the validator's test image as a JPEG: 1000x1000 pixels, 10x10 squares in
    the colours its checks expect (square column x, row y has colorInfo[x][y])."""
    colours = ValidationInfo().colorInfo
    picture = PILImage.new("RGB", (1000, 1000))
    for x in range(10):
        for y in range(10):
            picture.paste(colours[x][y], (x * 100, y * 100, x * 100 + 100, y * 100 + 100))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=95, subsampling=0)
    return buffer.getvalue()


def add_image(url: str, image_root: Path, path: str, data: bytes) -> int:
    """Write a file under image_root and register it as an image with status ok; return
    its id."""
    target = image_root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    with PILImage.open(io.BytesIO(data)) as picture:
        width, height = picture.size
    engine = make_engine(url)
    now = datetime(2026, 12, 1, 12)
    with make_sessionmaker(engine).begin() as session:
        image_id = session.execute(select(func.max(Image.id))).scalar() + 1
        session.add(Image(id=image_id, path=path, path_hash=path_hash(path),
                          file_name=path.rsplit("/", 1)[-1], size=len(data),
                          mtime_ns=1_700_000_000_000_000_000,
                          content_hash=hashlib.sha256(data).hexdigest(), width=width,
                          height=height, status=OK, needs_grouping=False, created_at=now,
                          updated_at=now))
    engine.dispose()
    return image_id


def upright(data: bytes) -> PILImage.Image:
    """Return the image in `data` decoded by Pillow, EXIF orientation applied, as RGB."""
    return ImageOps.exif_transpose(PILImage.open(io.BytesIO(data))).convert("RGB")


def reference(data: bytes, box: tuple[int, int, int, int], size: tuple[int, int],
              rotation: int = 0, mirror: bool = False, mode: str = "RGB") -> PILImage.Image:
    """Return what a IIIF request should show, made by plain Pillow steps: crop the
    region (x, y, w, h), resize, mirror, turn clockwise, convert to `mode`."""
    x, y, w, h = box
    picture = upright(data).crop((x, y, x + w, y + h)).resize(size,
                                                              PILImage.Resampling.LANCZOS)
    if mirror:
        picture = ImageOps.mirror(picture)
    return picture.rotate(-rotation, expand=True).convert(mode)
