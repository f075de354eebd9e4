"""IIIF Image API 3.0 at level 2 (plus mirroring and bitonal) for every registered image:
/iiif/3/<id>/info.json and /iiif/3/<id>/<region>/<size>/<rotation>/<quality>.<format>.

The `iiif` reference implementation parses the request's syntax; the region and size are
resolved here against the upright image (as the thumbnails show it) and drawn with Pillow.
"""
from __future__ import annotations

import functools
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, current_app, redirect, request, send_file
from iiif.error import IIIFError
from iiif.request import IIIFRequest
from PIL import Image, ImageOps, UnidentifiedImageError

import db.images
from service import database, thumbnails
from service.errors import ApiError, check_image
from service.limits import MAX_ID
from service.media import DAY
from service.serialize import THUMBNAIL_SIZES

bp = Blueprint("iiif", __name__, url_prefix="/iiif/3")

CONTEXT = "http://iiif.io/api/image/3/context.json"
PROFILE = "level2"
_PROFILE_LINK = f'<http://iiif.io/api/image/3/{PROFILE}.json>;rel="profile"'
FORMATS = {"jpg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png")}
# Formats the spec names that this service does not make: 501, not 400.
KNOWN_FORMATS = {"tif", "gif", "pdf", "jp2", "webp"}
QUALITIES = {"default": "RGB", "color": "RGB", "gray": "L", "bitonal": "1"}
TILE = 512
# Results up to this many pixels (thumbnails, tiles) are kept in the IIIF cache.
CACHED_PIXELS = 1024 * 1024
_DIGITS = re.compile(r"[0-9]{1,20}")
_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError,
           Image.DecompressionBombError)
_ORIENTATION = 0x0112
_TRANSPOSED = {5, 6, 7, 8}  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class Plan:
    """A request resolved against one image: what to cut, how big, how to turn it."""
    box: tuple[int, int, int, int]  # x, y, w, h of the upright image
    size: tuple[int, int]  # width, height before rotation
    mirror: bool
    rotation: int
    quality: str
    format: str

    def key(self, row) -> str:
        """Return the cache file name: the same for every request of this result."""
        x, y, w, h = self.box
        mirror = "m" if self.mirror else ""
        return (f"{thumbnails.content_version(row)}-{x},{y},{w},{h}-{self.size[0]},"
                f"{self.size[1]}-{mirror}{self.rotation}-{self.quality}.{self.format}")


def service_id(image_id: int) -> str:
    """Return the IIIF image service's id (its base URI) for an image."""
    return f"{request.host_url.rstrip('/')}{request.script_root}/iiif/3/{image_id}"


def _image_id(identifier: str) -> int:
    # An identifier that cannot be an image id names no image: 404, as the spec asks.
    if not _DIGITS.fullmatch(identifier) or not 1 <= int(identifier) <= MAX_ID:
        raise ApiError(404, f"no image with identifier {identifier[:40]!r}")
    return int(identifier)


def _row(number: int):
    return check_image(number, db.images.get_image(database.connection(), number))


def upright_size(row) -> tuple[int, int]:
    """Return (width, height) of an image as shown, EXIF orientation applied."""
    settings = current_app.config["SETTINGS"]
    return _upright_size(row, settings.image_root, settings.max_image_pixels)


@functools.lru_cache(maxsize=4096)
def _upright_size(row, image_root: Path, max_pixels: int) -> tuple[int, int]:
    # Keyed by the whole row, so a changed file (another content hash) is read again; a
    # hit costs no file system call. Errors are not cached.
    try:
        with Image.open(thumbnails.image_file(row, image_root)) as picture:
            width, height = picture.size
            orientation = picture.getexif().get(_ORIENTATION, 1)
    except _ERRORS as error:
        raise ApiError(422, f"the image file cannot be decoded: {error}") from None
    if width * height > max_pixels:
        raise ApiError(422, f"the image has {width}x{height} pixels, more than "
                            f"MAX_IMAGE_PIXELS={max_pixels}")
    return (height, width) if orientation in _TRANSPOSED else (width, height)


@bp.get("/<identifier>")
def base(identifier: str):
    """Redirect the image's base URI to its image information."""
    return redirect(f"{service_id(_row(_image_id(identifier)).id)}/info.json", 303)


@bp.get("/<identifier>/info.json")
def info(identifier: str):
    """Return the image information (info.json) of an image."""
    row = _row(_image_id(identifier))
    width, height = upright_size(row)
    biggest = max(width, height)
    sizes = [_fit(width, height, side) for side in THUMBNAIL_SIZES if side < biggest]
    body = {
        "@context": CONTEXT, "id": service_id(row.id), "type": "ImageService3",
        "protocol": "http://iiif.io/api/image", "profile": PROFILE,
        "width": width, "height": height,
        # No upscaling: the image itself is the largest size.
        "maxWidth": width, "maxHeight": height, "maxArea": width * height,
        "sizes": [{"width": w, "height": h} for w, h in sizes + [(width, height)]],
        "tiles": [{"width": TILE, "scaleFactors": _scale_factors(biggest)}],
        "extraQualities": ["color", "gray", "bitonal"],
        "extraFormats": ["png"],
        "extraFeatures": ["mirroring"],
    }
    response = current_app.json.response(body)
    # JSON-LD for clients that ask for it (the spec's jsonldMediaType), plain JSON else.
    if request.accept_mimetypes.best_match(["application/json", "application/ld+json"]) \
            == "application/ld+json":
        response.headers["Content-Type"] = f'application/ld+json;profile="{CONTEXT}"'
    response.vary.add("Accept")
    response.headers["Link"] = _PROFILE_LINK
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.add_etag()
    return response.make_conditional(request)


def _fit(width: int, height: int, side: int) -> tuple[int, int]:
    """Return the size of (width, height) scaled to fit in side x side."""
    scale = side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _scale_factors(biggest: int) -> list[int]:
    factors = [1]
    while biggest / factors[-1] > TILE:
        factors.append(factors[-1] * 2)
    return factors


@bp.get("/<identifier>/<region>/<size>/<rotation>/<quality_format>")
def image(identifier: str, region: str, size: str, rotation: str, quality_format: str):
    """Return a region of an image, scaled, turned and coloured as the URL asks."""
    number = _image_id(identifier)
    parsed = _parse(region, size, rotation, quality_format)
    row = _row(number)
    plan = resolve(parsed, upright_size(row))
    settings = current_app.config["SETTINGS"]
    key = plan.key(row)
    mimetype = FORMATS[plan.format][1]
    cache = settings.thumbnail_cache / "iiif"
    limit = settings.iiif_cache_mb * 1024 * 1024
    keep = limit > 0 and plan.size[0] * plan.size[1] <= CACHED_PIXELS
    if keep and (cache / key).is_file():
        return _send(cache / key, mimetype, key)
    data = render(thumbnails.image_file(row, settings.image_root), plan,
                  settings.max_image_pixels)
    if keep and thumbnails.store(cache, key, data) is not None:
        _note_written(cache, len(data), limit)
    return _send(io.BytesIO(data), mimetype, key)


def _send(source, mimetype: str, key: str):
    response = send_file(source, mimetype=mimetype, etag=key, conditional=True,
                         max_age=DAY)
    response.headers["Link"] = _PROFILE_LINK
    return response


_written = {"bytes": 0}


def _note_written(cache: Path, size: int, limit: int) -> None:
    """Trim the cache whenever this worker has written a sixteenth of its bound."""
    _written["bytes"] += size
    if _written["bytes"] * 16 >= limit:
        _written["bytes"] = 0
        try:
            thumbnails.trim(cache, limit)
        except OSError as error:
            current_app.logger.warning("IIIF cache %s cannot be trimmed: %s", cache, error)


def _parse(region: str, size: str, rotation: str, quality_format: str) -> IIIFRequest:
    """Return the parsed request, or raise the spec's 400 or 501."""
    parsed = IIIFRequest(api_version="3.0", region=region, size=size, rotation=rotation)
    parsed.quality = parsed.strip_format(quality_format)
    try:
        parsed.parse_parameters()
    except IIIFError as error:
        raise ApiError(400, f"{error.parameter}: {error.text}", parameter=error.parameter)
    numbers = [*(parsed.region_xywh or ()), parsed.size_pct or 0.0, parsed.rotation_deg]
    if not all(math.isfinite(number) for number in numbers):  # float() takes "nan", "inf"
        raise ApiError(400, "region, size and rotation take finite numbers only")
    if parsed.size_pct is not None and parsed.size_pct > 100:
        raise ApiError(400, f"size {parsed.size} is larger than the region; upscaling is "
                            "not offered", parameter="size")
    if parsed.format in KNOWN_FORMATS:
        raise ApiError(501, f"format {parsed.format} is not offered: use jpg or png",
                       parameter="format")
    if parsed.format not in FORMATS:
        raise ApiError(400, f"format must be jpg or png, got {str(parsed.format)[:20]!r}",
                       parameter="format")
    if parsed.size_caret:
        raise ApiError(501, "sizes above the image's own (^) are not offered",
                       parameter="size")
    if parsed.rotation_deg not in (0.0, 90.0, 180.0, 270.0):
        raise ApiError(501, "only rotations by 0, 90, 180 and 270 degrees are offered",
                       parameter="rotation")
    return parsed


def resolve(parsed: IIIFRequest, image_size: tuple[int, int]) -> Plan:
    """Return the plan of a parsed request for an image of `image_size`, or raise a 400."""
    width, height = image_size
    if parsed.region_full:
        box = (0, 0, width, height)
    elif parsed.region_square:
        side = min(width, height)
        box = ((width - side) // 2, (height - side) // 2, side, side)
    else:
        x, y, w, h = parsed.region_xywh
        if parsed.region_pct:
            x, y = round(x * width / 100), round(y * height / 100)
            w, h = round(w * width / 100), round(h * height / 100)
        if x >= width or y >= height:
            raise ApiError(400, f"region {parsed.region} lies outside the image of "
                                f"{width}x{height} pixels", parameter="region")
        box = (x, y, min(w, width - x), min(h, height - y))
        if box[2] <= 0 or box[3] <= 0:
            raise ApiError(400, f"region {parsed.region} is empty", parameter="region")
    size = _size(parsed, box[2], box[3])
    return Plan(box, size, parsed.rotation_mirror, int(parsed.rotation_deg),
                parsed.quality, parsed.format)


def _size(parsed: IIIFRequest, width: int, height: int) -> tuple[int, int]:
    """Return the output size of a region of width x height; 400 if it is empty or
    larger than the region (upscaling needs ^, which is not offered)."""
    if parsed.size_max:
        return width, height
    if parsed.size_pct is not None:
        w, h = round(width * parsed.size_pct / 100), round(height * parsed.size_pct / 100)
    elif parsed.size_bang:
        scale = min(parsed.size_wh[0] / width, parsed.size_wh[1] / height)
        # As large as possible without exceeding either bound.
        w = min(parsed.size_wh[0], max(1, math.floor(width * scale + 0.5)))
        h = min(parsed.size_wh[1], max(1, math.floor(height * scale + 0.5)))
    else:
        w, h = parsed.size_wh
        if w is None:
            w = round(width * h / height)
        elif h is None:
            h = round(height * w / width)
    if w <= 0 or h <= 0:
        raise ApiError(400, f"size {parsed.size} makes an empty image", parameter="size")
    if w > width or h > height:
        raise ApiError(400, f"size {parsed.size} is larger than the region of {width}x"
                            f"{height} pixels; upscaling is not offered", parameter="size")
    return w, h


def render(path: Path, plan: Plan, max_pixels: int) -> bytes:
    """Return the encoded image that `plan` describes, cut from the file at `path`."""
    x, y, w, h = plan.box
    out_w, out_h = plan.size
    try:
        with Image.open(path) as picture:
            if picture.width * picture.height > max_pixels:
                raise ApiError(422, f"the image has {picture.width}x{picture.height} "
                                    f"pixels, more than MAX_IMAGE_PIXELS={max_pixels}")
            full = picture.size
            transposed = picture.getexif().get(_ORIENTATION, 1) in _TRANSPOSED
            upright = full[::-1] if transposed else full
            # JPEG: decode at 1/2, 1/4 or 1/8 scale where the output is that much smaller.
            scale = min(out_w / w, out_h / h)
            wanted = (math.ceil(upright[0] * scale), math.ceil(upright[1] * scale))
            picture.draft("RGB", wanted[::-1] if transposed else wanted)
            picture = ImageOps.exif_transpose(picture).convert("RGB")
            factor_x, factor_y = picture.width / upright[0], picture.height / upright[1]
            box = (x * factor_x, y * factor_y, (x + w) * factor_x, (y + h) * factor_y)
            picture = picture.resize((out_w, out_h), Image.Resampling.LANCZOS, box=box)
    except _ERRORS as error:
        raise ApiError(422, f"the image file cannot be decoded: {error}") from None
    if plan.mirror:
        picture = ImageOps.mirror(picture)
    if plan.rotation:  # clockwise, as the spec turns; Pillow's ROTATE_n is anticlockwise
        picture = picture.transpose({90: Image.Transpose.ROTATE_270,
                                     180: Image.Transpose.ROTATE_180,
                                     270: Image.Transpose.ROTATE_90}[plan.rotation])
    picture = picture.convert(QUALITIES[plan.quality])
    kind = FORMATS[plan.format][0]
    if kind == "JPEG" and picture.mode == "1":
        picture = picture.convert("L")
    buffer = io.BytesIO()
    if kind == "JPEG":
        picture.save(buffer, kind, quality=85)
    else:
        picture.save(buffer, kind, compress_level=3)
    return buffer.getvalue()
