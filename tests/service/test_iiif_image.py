"""The IIIF Image API 3.0: the IIIF consortium's validator against the live service at
level 2 (and the mirroring it offers beyond), every parameter family against plain Pillow,
the spec's errors, the cache and CORS; on SQLite and MariaDB."""
from __future__ import annotations

import io
import json
import os
import urllib.request
from urllib.parse import quote

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from iiif_validator import validator
from PIL import Image as PILImage

from iiif_support import reference, upright
from service import create_app, thumbnails
from service_support import settings_for_archive

LEVEL = 2
EXTRA_TESTS = ("rot_mirror", "rot_mirror_180")  # mirroring, claimed in extraFeatures
VALIDATOR_TESTS = sorted(
    name for name, test in validator.TestSuite(validator.ValidationInfo()).list_tests("3.0").items()
    if test["level"] <= LEVEL or name in EXTRA_TESTS)


@pytest.mark.parametrize("name", VALIDATOR_TESTS)
def test_the_iiif_validator_passes_at_level_2(iiif_server, name):
    base, image_id = iiif_server
    result = validator.ImageAPI(str(image_id), base.removeprefix("http://"), "iiif/3", "http",
                                "", "3.0", debug=False)
    validator.TestSuite(validator.ValidationInfo()).run_test(name, result)
    error = result.exception
    assert error is None, (f"{name}: {error.message} (got {error.got!r}, expected "
                           f"{error.expected!r}) at {result.urls}")


def test_the_validator_notices_a_wrong_image(iiif_server):
    # A control: the fixture's image 1 is not the validator's grid, so its checks fail.
    base, _ = iiif_server
    result = validator.ImageAPI("1", base.removeprefix("http://"), "iiif/3", "http", "",
                                "3.0", debug=False)
    validator.TestSuite(validator.ValidationInfo()).run_test("id_squares", result)
    assert result.exception is not None


def test_the_info_json_claims_what_the_validator_checked(iiif_server):
    base, image_id = iiif_server
    with urllib.request.urlopen(f"{base}/iiif/3/{image_id}/info.json") as response:
        info = json.load(response)
    assert info["profile"] == f"level{LEVEL}"
    assert info["extraFeatures"] == ["mirroring"]
    assert (info["width"], info["height"]) == (1000, 1000)
    assert info["sizes"][-1] == {"width": 1000, "height": 1000}


# ---- each parameter family against Pillow, on the 600x400 fixture JPEG (id 1) and the
# one stored 600x400 with EXIF orientation 6 (id 5, shown 400x600) ----

# (image id, region, size, expected box x,y,w,h on the upright image, expected size):
# the boxes and sizes are worked out by hand from the spec.
CASES = [
    (1, "full", "max", (0, 0, 600, 400), (600, 400)),
    (1, "square", "max", (100, 0, 400, 400), (400, 400)),
    (5, "square", "max", (0, 100, 400, 400), (400, 400)),
    (1, "10,20,300,200", "max", (10, 20, 300, 200), (300, 200)),
    (1, "500,300,300,300", "max", (500, 300, 100, 100), (100, 100)),  # cut at the edge
    (1, "pct:10,20,50,50", "max", (60, 80, 300, 200), (300, 200)),
    (5, "pct:0,50,100,50", "max", (0, 300, 400, 300), (400, 300)),
    (1, "full", "300,", (0, 0, 600, 400), (300, 200)),
    (1, "full", ",100", (0, 0, 600, 400), (150, 100)),
    (1, "full", "pct:25", (0, 0, 600, 400), (150, 100)),
    (1, "full", "200,200", (0, 0, 600, 400), (200, 200)),  # distorted, as asked
    (1, "full", "!100,100", (0, 0, 600, 400), (100, 67)),
    (5, "full", "!100,100", (0, 0, 400, 600), (67, 100)),
    (1, "10,20,300,200", "!60,60", (10, 20, 300, 200), (60, 40)),
    (5, "full", "max", (0, 0, 400, 600), (400, 600)),
]


def _decode(response) -> PILImage.Image:
    assert response.status_code == 200, response.get_data(as_text=True)
    return PILImage.open(io.BytesIO(response.data))


def _difference(answer: PILImage.Image, expected: PILImage.Image) -> float:
    return float(np.abs(np.asarray(answer, np.float64)
                        - np.asarray(expected, np.float64)).mean())


@pytest.mark.parametrize("image_id,region,size,box,out", CASES)
def test_regions_and_sizes_match_pillow(client, archive, image_id, region, size, box, out):
    answer = _decode(client.get(f"/iiif/3/{image_id}/{region}/{size}/0/default.png"))
    expected = reference(archive.files[image_id], box, out)
    assert answer.size == out and answer.mode == "RGB"
    # Reduced-scale JPEG decoding (the output at half size or less) differs a little from
    # a full decode and a resize.
    assert _difference(answer, expected) < 3.0


@pytest.mark.parametrize("rotation", ["0", "90", "180", "270", "!0", "!90", "!180", "!270"])
def test_rotations_and_mirroring_match_pillow(client, archive, rotation):
    answer = _decode(client.get(f"/iiif/3/5/10,20,300,200/150,/{rotation}/color.png"))
    degrees, mirror = int(rotation.lstrip("!")), rotation.startswith("!")
    expected = reference(archive.files[5], (10, 20, 300, 200), (150, 100), degrees, mirror)
    assert answer.size == expected.size
    assert _difference(answer, expected) < 3.0


@pytest.mark.parametrize("quality,mode", [("default", "RGB"), ("color", "RGB"),
                                          ("gray", "L"), ("bitonal", "1")])
def test_qualities_match_pillow(client, archive, quality, mode):
    answer = _decode(client.get(f"/iiif/3/1/full/300,/0/{quality}.png"))
    expected = reference(archive.files[1], (0, 0, 600, 400), (300, 200), mode=mode)
    assert answer.mode == mode
    limit = 3.0 if mode != "1" else 0.2  # bitonal: the share of pixels that differ
    difference = _difference(answer, expected) / (255 if mode == "1" else 1)
    assert difference < limit


@pytest.mark.parametrize("fmt,kind,mimetype", [("jpg", "JPEG", "image/jpeg"),
                                               ("png", "PNG", "image/png")])
def test_formats(client, archive, fmt, kind, mimetype):
    response = client.get(f"/iiif/3/1/full/max/0/default.{fmt}")
    answer = _decode(response)
    assert (answer.format, response.mimetype) == (kind, mimetype)
    assert _difference(answer.convert("RGB"), upright(archive.files[1])) < 3.0


def test_info_json_describes_the_upright_image(client):
    info = client.get("/iiif/3/5/info.json").get_json()
    assert info["id"] == "http://localhost/iiif/3/5"
    assert (info["width"], info["height"]) == (400, 600)
    assert info["sizes"] == [{"width": 85, "height": 128}, {"width": 171, "height": 256},
                             {"width": 341, "height": 512}, {"width": 400, "height": 600}]
    assert info["maxArea"] == 400 * 600
    # Every size and tile the information promises is served at that size.
    for entry in info["sizes"]:
        answer = _decode(client.get(f"/iiif/3/5/full/{entry['width']},{entry['height']}"
                                    "/0/default.jpg"))
        assert answer.size == (entry["width"], entry["height"])
    tile = info["tiles"][0]
    assert tile["width"] == 512 and tile["scaleFactors"] == [1, 2]
    assert _decode(client.get("/iiif/3/5/0,512,400,88/400,/0/default.jpg")).size == (400, 88)


def test_the_base_uri_redirects_to_the_information(client):
    response = client.get("/iiif/3/1")
    assert response.status_code == 303
    assert response.headers["Location"] == "http://localhost/iiif/3/1/info.json"


def test_json_ld_when_asked_for(client):
    plain = client.get("/iiif/3/1/info.json")
    linked = client.get("/iiif/3/1/info.json", headers={"Accept": "application/ld+json"})
    assert plain.mimetype == "application/json"
    assert linked.headers["Content-Type"] == \
        'application/ld+json;profile="http://iiif.io/api/image/3/context.json"'


# ---- the spec's errors: never a 500 ----

ERRORS = [
    ("/iiif/3/99999/info.json", 404),             # no such image
    ("/iiif/3/abc/info.json", 404),               # cannot be an image id
    ("/iiif/3/..%2F..%2Fetc%2Fpasswd/info.json", 404),
    ("/iiif/3/../1/info.json", 404),
    ("/iiif/3/8/full/max/0/default.jpg", 410),    # its file is gone
    ("/iiif/3/10/full/max/0/default.jpg", 403),   # its stored path leaves IMAGE_ROOT
    ("/iiif/3/11/info.json", 403),                # a symlink out of IMAGE_ROOT
    ("/iiif/3/7/full/max/0/default.jpg", 422),    # not a JPEG
    ("/iiif/3/1/0,0,0,10/max/0/default.jpg", 400),
    ("/iiif/3/1/0,0,10,-5/max/0/default.jpg", 400),
    ("/iiif/3/1/-1,0,10,10/max/0/default.jpg", 400),
    ("/iiif/3/1/600,0,10,10/max/0/default.jpg", 400),  # outside the image
    ("/iiif/3/1/pct:0,0,0,10/max/0/default.jpg", 400),
    ("/iiif/3/1/pct:0,0,101,10/max/0/default.jpg", 400),
    ("/iiif/3/1/full/0,/0/default.jpg", 400),
    ("/iiif/3/1/full/pct:0/0/default.jpg", 400),
    ("/iiif/3/1/full/601,/0/default.jpg", 400),    # upscaling without ^
    ("/iiif/3/1/full/100000,100000/0/default.jpg", 400),  # far over the pixel cap
    ("/iiif/3/1/full/pct:101/0/default.jpg", 400),
    ("/iiif/3/1/full/pct:1e308/0/default.jpg", 400),
    ("/iiif/3/1/full/pct:nan/0/default.jpg", 400),
    ("/iiif/3/1/pct:nan,0,10,10/max/0/default.jpg", 400),
    ("/iiif/3/1/pct:0,0,inf,10/max/0/default.jpg", 400),
    ("/iiif/3/1/full/!0,100/0/default.jpg", 400),
    ("/iiif/3/1/full/,/0/default.jpg", 400),
    ("/iiif/3/1/full/max/nan/default.jpg", 400),
    ("/iiif/3/1/full/full/0/default.jpg", 400),   # 2.x syntax
    ("/iiif/3/1/full/^max/0/default.jpg", 501),   # upscaling is not offered
    ("/iiif/3/1/full/^1000,/0/default.jpg", 501),
    ("/iiif/3/1/full/max/45/default.jpg", 501),   # arbitrary rotation is not offered
    ("/iiif/3/1/full/max/361/default.jpg", 400),
    ("/iiif/3/1/full/max/x/default.jpg", 400),
    ("/iiif/3/1/full/max/0/sepia.jpg", 400),
    ("/iiif/3/1/full/max/0/default.webp", 501),   # a spec format not offered
    ("/iiif/3/1/full/max/0/default.bmp", 400),
    ("/iiif/3/1/full/max/0/default", 400),
    ("/iiif/3/1/full/max/0/default.jpg/more", 404),
    ("/iiif/3/1/info.xml", 404),
]


@pytest.mark.parametrize("url,status", ERRORS)
def test_bad_requests_get_the_specs_status(client, url, status):
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json and response.get_json()["error"]


_PIECE = st.text(alphabet="0123456789,.!^:-+e pctfulsqarmxndi", max_size=14)


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(region=_PIECE, size=_PIECE, rotation=_PIECE,
       quality=st.sampled_from(["default", "gray", "bitonal", "x"]),
       fmt=st.sampled_from(["jpg", "png", "gif", "x"]))
def test_any_request_gets_an_answer_or_a_client_error(client, region, size, rotation,
                                                      quality, fmt):
    url = f"/iiif/3/1/{quote(region)}/{quote(size)}/{quote(rotation)}/{quality}.{fmt}"
    response = client.get(url)
    assert response.status_code in (200, 400, 404, 501), (url, response.data[:200])
    if response.status_code == 200:
        PILImage.open(io.BytesIO(response.data)).load()


def test_images_over_the_pixel_cap_are_refused(archive, tmp_path):
    app = create_app(settings_for_archive(archive, tmp_path, max_image_pixels=600 * 400 - 1))
    client = app.test_client()
    for url in ("/iiif/3/1/info.json", "/iiif/3/1/full/128,/0/default.jpg"):
        response = client.get(url)
        assert response.status_code == 422 and "MAX_IMAGE_PIXELS" in response.get_json()["error"]
    app.extensions["db_engine"].dispose()


# ---- the cache ----

def test_repeated_requests_come_from_the_cache(archive, tmp_path):
    app = create_app(settings_for_archive(archive, tmp_path))
    client = app.test_client()
    first = client.get("/iiif/3/2/full/!200,200/0/default.jpg")
    cached = list((tmp_path / "iiif").iterdir())
    assert len(cached) == 1 and cached[0].read_bytes() == first.data
    # The same result asked for in other words is the same cache entry.
    again = client.get("/iiif/3/2/0,0,600,400/200,/0/default.jpg")
    assert again.data == first.data and again.headers["ETag"] == first.headers["ETag"]
    assert len(list((tmp_path / "iiif").iterdir())) == 1
    assert client.get("/iiif/3/2/full/max/0/default.jpg",
                      headers={"If-None-Match": again.headers["ETag"]}).status_code == 200
    assert client.get("/iiif/3/2/full/200,/0/default.jpg",
                      headers={"If-None-Match": again.headers["ETag"]}).status_code == 304
    # Too big to keep: 600x400 pixels are under the bound, so keep a smaller bound off.
    app.extensions["db_engine"].dispose()
    off = create_app(settings_for_archive(archive, tmp_path / "off", iiif_cache_mb=0))
    assert off.test_client().get("/iiif/3/2/full/100,/0/default.jpg").status_code == 200
    assert not (tmp_path / "off" / "iiif").exists()
    off.extensions["db_engine"].dispose()


def test_trim_keeps_the_newest_files_within_the_bound(tmp_path):
    for number in range(10):
        path = tmp_path / f"{number}.jpg"
        path.write_bytes(b"x" * 1000)
        os.utime(path, ns=(number * 10**9, number * 10**9))
    thumbnails.trim(tmp_path, 3500)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["7.jpg", "8.jpg", "9.jpg"]


# ---- CORS, by setting ----

@pytest.mark.parametrize("origins,expected", [("", None), ("*", "*"),
                                              ("https://portal.example", "https://portal.example")])
def test_cors_on_iiif_thumbnails_and_files_by_setting(archive, tmp_path, origins, expected):
    app = create_app(settings_for_archive(archive, tmp_path, cors_origins=origins))
    client = app.test_client()
    for url in ("/iiif/3/1/info.json", "/iiif/3/1/full/100,/0/default.jpg",
                "/images/1/thumbnail?size=128", "/images/1/file", "/api/v1/images/1"):
        response = client.get(url, headers={"Origin": "https://portal.example"})
        assert response.status_code == 200
        assert response.headers.get("Access-Control-Allow-Origin") == expected, url
        if expected:
            exposed = response.headers["Access-Control-Expose-Headers"]
            assert "ETag" in [name.strip() for name in exposed.split(",")]
    # The pages stay for this site only.
    page = client.get("/images/1", headers={"Origin": "https://portal.example"})
    assert "Access-Control-Allow-Origin" not in page.headers
    if expected:
        preflight = client.options("/iiif/3/1/info.json", headers={
            "Origin": "https://portal.example", "Access-Control-Request-Method": "GET"})
        methods = {m.strip() for m in preflight.headers["Access-Control-Allow-Methods"].split(",")}
        assert methods == {"GET", "HEAD", "OPTIONS"}
        upload = client.options("/api/v1/search", headers={
            "Origin": "https://portal.example", "Access-Control-Request-Method": "POST"})
        assert "POST" in upload.headers["Access-Control-Allow-Methods"]
    app.extensions["db_engine"].dispose()
