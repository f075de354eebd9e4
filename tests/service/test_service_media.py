"""The original endpoints field by field, the feature plots, thumbnails and files."""
from __future__ import annotations

import hashlib
import io
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image as PILImage

from service_support import (OUTSIDE_ID, SPECS, SYMLINK_ID, Spec, build_archive,
                             settings_for_archive)

from db.models import OK
from service import create_app
from service.plots import PALETTE, levels

SVG = "{http://www.w3.org/2000/svg}"


def test_image_count_is_a_bare_integer_of_processed_images(client):
    response = client.get("/image_count")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.get_json() == sum(spec.status == OK for spec in SPECS)
    assert response.data.strip() == str(response.get_json()).encode()


def test_image_name_is_a_one_element_list(client):
    assert client.get("/image_name/5").get_json() == ["straße 1.jpg"]
    assert client.get("/image_name/7").get_json() == ["corrupt.jpg"]


def test_image_name_and_neighbours_field_by_field(client, archive):
    for image_id, expected in archive.neighbours.items():
        body = client.get(f"/image_name_and_neighbours/{image_id}").get_json()
        assert isinstance(body, list) and len(body) == 2
        name, entries = body
        assert name == SPECS[image_id - 1].path.rsplit("/", 1)[-1]
        assert len(entries) == len(expected)
        for entry, (neighbour_id, distance) in zip(entries, expected):
            assert set(entry) == {"id", "distance"}
            assert isinstance(entry["id"], int) and entry["id"] == neighbour_id
            assert isinstance(entry["distance"], float)
            assert entry["distance"] == pytest.approx(distance, rel=1e-12)


@pytest.mark.parametrize("url, status", [("/image_name_and_neighbours/6", 404),
                                         ("/image_name_and_neighbours/8", 410),
                                         ("/image_name/8", 410), ("/image_name/999", 404),
                                         ("/image_fingerprint/7", 404)])
def test_original_endpoints_answer_errors_as_json(client, url, status):
    response = client.get(url)
    assert response.status_code == status and "error" in response.get_json()


def svg_cells(body: bytes) -> tuple[tuple[int, int], dict[tuple[int, int], str]]:
    """Return (columns, rows) of an SVG heat map and the fill colour of every cell."""
    root = ET.fromstring(body)
    _, _, columns, rows = map(int, root.get("viewBox").split())
    cells = {}
    for path in root.iter(SVG + "path"):
        for x, y, width in re.findall(r"M(\d+) (\d+)h(\d+)v1h-\d+z", path.get("d")):
            for dx in range(int(width)):
                cell = (int(y), int(x) + dx)
                assert cell not in cells, "cells overlap"
                cells[cell] = path.get("fill")
    return (columns, rows), cells


def colour(level: int) -> str:
    return "#" + "".join(f"{c:02x}" for c in PALETTE[level])


def test_fingerprint_svg_is_a_32_by_64_heat_map_of_the_vector(client, archive):
    response = client.get("/images/1/fingerprint.svg")
    assert response.mimetype == "image/svg+xml"
    (columns, rows), cells = svg_cells(response.data)
    assert (columns, rows) == (64, 32) and len(cells) == 2048
    grid = levels(archive.vectors[1], 32, 64)
    assert all(cells[(y, x)] == colour(grid[y, x]) for y in range(32) for x in range(64))
    assert grid.min() == 0 and grid.max() == 63  # the full colour range is used


def test_original_fingerprint_wraps_the_vector_into_46_by_46(client, archive):
    (columns, rows), cells = svg_cells(client.get("/image_fingerprint/2").data)
    assert (columns, rows) == (46, 46) and len(cells) == 46 * 46
    flat = [cells[divmod(i, 46)] for i in range(46 * 46)]
    assert flat[2048:] == flat[:46 * 46 - 2048]  # cell 2048 starts over at value 0
    grid = levels(archive.vectors[2], 46, 46, wrap=True).ravel()
    assert flat == [colour(level) for level in grid]


def test_fingerprint_png_has_one_block_per_value(client, archive):
    response = client.get("/images/3/fingerprint.png")
    assert response.mimetype == "image/png"
    picture = np.asarray(PILImage.open(io.BytesIO(response.data)).convert("RGB"))
    assert picture.shape == (256, 512, 3)
    grid = levels(archive.vectors[3], 32, 64)
    assert np.array_equal(picture[4::8, 4::8], PALETTE[grid])


def test_thumbnails_fit_the_size_apply_exif_and_are_cached(app, client, archive):
    cache = app.config["SETTINGS"].thumbnail_cache
    for size in (128, 256, 512):
        response = client.get(f"/images/1/thumbnail?size={size}")
        assert response.status_code == 200 and response.mimetype == "image/jpeg"
        picture = PILImage.open(io.BytesIO(response.data))
        assert picture.size[0] == size and abs(picture.size[1] - size * 2 / 3) <= 1
    assert sorted(p.name for p in cache.glob("1-*.jpg")) == \
        sorted(f"1-{hashlib.sha256(archive.files[1]).hexdigest()[:32]}-{size}.jpg"
               for size in (128, 256, 512))
    # Image 5 is stored 600x400 with orientation 6 (rotate 90° clockwise to view):
    # shown portrait, the white top-left corner of the stored pixels moves top-right.
    picture = np.asarray(PILImage.open(io.BytesIO(
        client.get("/images/5/thumbnail?size=128").data)).convert("L"))
    assert picture.shape[0] == 128 and abs(picture.shape[1] - 85) <= 1
    assert picture[:16, -16:].mean() > 240 and picture[:16, :16].mean() < 200
    assert not list(cache.glob(".tmp-*"))  # written atomically, no leftovers


def test_cached_thumbnail_is_served_from_the_cache(app, client):
    first = client.get("/images/2/thumbnail?size=128").data
    cached = next(app.config["SETTINGS"].thumbnail_cache.glob("2-*-128.jpg"))
    assert cached.read_bytes() == first
    cached.write_bytes(b"marker")
    try:
        assert client.get("/images/2/thumbnail?size=128").data == b"marker"
    finally:
        cached.unlink()


@pytest.mark.parametrize("size", ["64", "100", "0", "-128", "abc", "256.0", "1e3",
                                  "../../etc/passwd", "/etc/passwd", "9" * 30])
def test_thumbnail_sizes_are_fixed(client, size):
    response = client.get(f"/images/1/thumbnail?size={size}")
    assert response.status_code == 400 and "error" in response.get_json()


def test_file_is_the_registered_file(client, archive):
    response = client.get("/images/5/file")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert response.data == archive.files[5]
    assert "max-age" in response.headers["Cache-Control"]


@pytest.mark.parametrize("route", ["file", "thumbnail"])
@pytest.mark.parametrize("image_id, status", [
    (8, 410),            # status missing
    (OUTSIDE_ID, 403),   # a stored path with '..' leaving IMAGE_ROOT
    (SYMLINK_ID, 403),   # a symlink under IMAGE_ROOT pointing outside
])
def test_files_outside_the_root_or_gone_are_refused(client, route, image_id, status):
    response = client.get(f"/images/{image_id}/{route}")
    assert response.status_code == status and "error" in response.get_json()
    assert b"outside the image root" not in response.data


def test_thumbnail_of_an_undecodable_file_is_422_without_the_server_path(client, archive):
    response = client.get("/images/7/thumbnail")
    error = response.get_json()["error"]
    assert response.status_code == 422 and "cannot be decoded" in error
    # Pillow's text names the file it opened: only its name reaches the client.
    assert "corrupt.jpg" in error and str(archive.image_root) not in error
    assert str(archive.image_root.parent) not in response.get_data(as_text=True)


def test_file_deleted_after_the_scan_is_410(client, archive):
    path = archive.image_root / "queue" / "waiting.jpg"
    data = path.read_bytes()
    path.unlink()
    try:
        for url in ("/images/9/file", "/images/9/thumbnail?size=512"):
            assert client.get(url).status_code == 410
    finally:
        path.write_bytes(data)


def test_a_file_name_with_control_characters_is_served(tmp_path):
    specs = SPECS + (Spec("odd/line\nbreak\r.jpg"),)
    archive = build_archive(f"sqlite:///{tmp_path / 'images.sqlite3'}", tmp_path, specs)
    client = create_app(settings_for_archive(archive, tmp_path)).test_client()
    response = client.get(f"/images/{len(specs)}/file")
    assert response.status_code == 200
    assert response.data == archive.files[len(specs)]
    assert "line_break_.jpg" in response.headers["Content-Disposition"]


@pytest.mark.parametrize("url", ["/images/7/thumbnail", "/iiif/3/7/info.json",
                                 "/iiif/3/7/full/max/0/default.jpg", "/images/10/file",
                                 "/images/11/thumbnail", "/images/8/file"])
def test_no_answer_names_a_folder_of_the_server(client, archive, url):
    # The failed, missing, escaping and symlinked files: every error the files give.
    response = client.get(url)
    assert response.status_code >= 400
    assert str(archive.image_root.parent) not in response.get_data(as_text=True)
