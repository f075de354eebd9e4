"""Bad input on every route: clear 4xx errors, never a 500, nothing read from the URL."""
from __future__ import annotations

import pytest


# Every route that takes an image id, with {id} where it goes.
ID_ROUTES = [
    "/api/v1/images/{id}", "/api/v1/images/{id}/neighbours", "/api/v1/images/{id}/features",
    "/image_name/{id}", "/image_name_and_neighbours/{id}", "/image_fingerprint/{id}",
    "/images/{id}/fingerprint.svg", "/images/{id}/fingerprint.png",
    "/images/{id}/thumbnail", "/images/{id}/file", "/images/{id}",
]
FILE_ROUTES = ["/images/{id}/thumbnail", "/images/{id}/file"]
HTML_ROUTES = {"/images/{id}"}

BAD_IDS = [
    "abc", "-1", "-0", "0", "00", "1.5", "1e3", "0x10", "+1", "%201", "1%20", "%E2%91%A0",
    "%D9%A3",                                   # Arabic-Indic digit three
    "9223372036854775808",                      # one past the largest BIGINT
    "99999999999999999999999999999999999999",   # beyond 64 bits
    "1%3B%20DROP%20TABLE%20images",             # 1; DROP TABLE images
    "1%27%20OR%20%271%27%3D%271",               # 1' OR '1'='1
    "1%20UNION%20SELECT%20path%20FROM%20images",
    "%00", "1%00",
]
UNKNOWN_IDS = ["999", "9223372036854775807", "0000999"]


def is_error(response, status):
    """Check the status, and that the body is a JSON error (an HTML page for pages)."""
    assert response.status_code == status, (response.status_code, response.data[:200])
    if response.mimetype == "text/html":
        assert b"<h1>" in response.data
    else:
        assert response.mimetype == "application/json"
        assert isinstance(response.get_json()["error"], str)


@pytest.mark.parametrize("route", ID_ROUTES)
@pytest.mark.parametrize("bad", BAD_IDS)
def test_malformed_ids_are_400(client, route, bad):
    response = client.get(route.format(id=bad))
    is_error(response, 400)
    assert (response.mimetype == "text/html") == (route in HTML_ROUTES)


@pytest.mark.parametrize("route", ID_ROUTES)
@pytest.mark.parametrize("unknown", UNKNOWN_IDS)
def test_unknown_ids_are_404(client, route, unknown):
    is_error(client.get(route.format(id=unknown)), 404)


@pytest.mark.parametrize("route", [r for r in ID_ROUTES if r != "/images/{id}"])
def test_missing_files_are_410(client, route):
    is_error(client.get(route.format(id=8)), 410)


def test_missing_image_page_is_a_clear_410_page(client):
    response = client.get("/images/8")
    assert response.status_code == 410 and response.mimetype == "text/html"
    assert b"missing from the archive" in response.data and b"gone/lost.jpg" in response.data


@pytest.mark.parametrize("url", [
    "/api/v1/images/1/neighbours?limit=0", "/api/v1/images/1/neighbours?limit=101",
    "/api/v1/images/1/neighbours?limit=-1", "/api/v1/images/1/neighbours?limit=abc",
    "/api/v1/images/1/neighbours?limit=1e2", "/api/v1/images/1/neighbours?limit=",
    "/api/v1/images/1/neighbours?limit=20%20OR%201%3D1",
    "/api/v1/images/1/neighbours?offset=-1", "/api/v1/images/1/neighbours?offset=101",
    "/api/v1/images/1/neighbours?offset=99999999999999999999999",
    "/api/v1/images?limit=0", "/api/v1/images?limit=1001", "/api/v1/images?cursor=-1",
    "/api/v1/images?cursor=x", "/api/v1/images?cursor=9223372036854775808",
    "/api/v1/images/lookup?name=a&limit=0", "/api/v1/images/lookup?name=a&cursor=-5",
    "/api/v1/images/lookup?path=" + "a" * 4097,
])
def test_parameters_out_of_range_are_400(client, url):
    is_error(client.get(url), 400)


@pytest.mark.parametrize("text", ["' OR '1'='1", "x'; DROP TABLE images; --",
                                  "%", "_", "\\", "\" OR 1=1 --", "1 UNION SELECT path",
                                  "\x00", "duplicate.jpg' --"])
def test_sql_injection_strings_find_nothing(client, text):
    for key in ("name", "path"):
        response = client.get("/api/v1/images/lookup", query_string={key: text})
        assert response.status_code == 200 and response.get_json()["images"] == []
    response = client.get("/search", query_string={"q": text})
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert client.get("/api/v1/stats").get_json()["images"]["total"] == 11  # tables intact


TRAVERSALS = [
    "/images/../../etc/passwd/file", "/images/..%2f..%2fetc%2fpasswd/file",
    "/images/%2e%2e/file", "/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd/file",
    "/images/..%252f..%252fetc%252fpasswd/file", "/images//etc/passwd/file",
    "/images/%2Fetc%2Fpasswd/file", "/images/1/file/../../../../etc/passwd",
    "/images/1/file/%2e%2e/%2e%2e/etc/passwd", "/images/1/../../../etc/passwd",
    "/images/C:%5CWindows%5Cwin.ini/file", "/images/~root/file",
    "/images/1%2f..%2f..%2foutside.jpg/file",
]


@pytest.mark.parametrize("kind", ["file", "thumbnail"])
@pytest.mark.parametrize("url", TRAVERSALS)
def test_path_traversal_never_reaches_the_disk(client, kind, url):
    response = client.get(url.replace("/file", f"/{kind}"))
    assert response.status_code in (400, 404), (url, response.status_code)
    assert b"root:" not in response.data and b"outside the image root" not in response.data


@pytest.mark.parametrize("route", FILE_ROUTES)
@pytest.mark.parametrize("query", ["path=/etc/passwd", "path=../outside.jpg",
                                   "file=../../etc/passwd", "name=..%2f..%2fetc%2fpasswd"])
def test_query_parameters_cannot_pick_the_file(client, archive, route, query):
    response = client.get(route.format(id=1) + "?" + query)
    assert response.status_code == 200  # extra parameters are ignored: image 1's file
    if route.endswith("/file"):
        assert response.data == archive.files[1]


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
@pytest.mark.parametrize("url", ["/api/v1/images", "/api/v1/images/1",
                                 "/api/v1/images/1/neighbours", "/image_name/1",
                                 "/images/1/file"])
def test_nothing_can_be_written(client, method, url):
    response = getattr(client, method)(url, json={"status": "failed"})
    is_error(response, 405)
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize("url", ["/nope", "/api/v1/nope", "/api/v2/images/1",
                                 "/image_name", "/images/1/thumbnail/extra"])
def test_unknown_routes_are_404_json(client, url):
    is_error(client.get(url), 404)
