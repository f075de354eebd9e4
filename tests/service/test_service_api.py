"""The JSON API over the fixture archive, on SQLite and on MariaDB."""
from __future__ import annotations

import re

import jsonschema_rs
import numpy as np
import pytest

from service_support import SPECS

from db.models import FAILED, MISSING, OK, PENDING

ALL_IDS = list(range(1, len(SPECS) + 1))


def get_json(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code, response.data[:300])
    assert response.mimetype == "application/json"
    return response.get_json()


def test_images_are_paged_in_id_order_with_next_links(client):
    seen, url = [], "/api/v1/images?limit=4"
    while url:
        page = get_json(client, url)
        assert len(page["images"]) <= 4
        seen += [image["id"] for image in page["images"]]
        url = page["next"]
    assert seen == ALL_IDS
    assert get_json(client, f"/api/v1/images?cursor={len(SPECS)}") == \
        {"images": [], "limit": 100, "next": None}


def test_image_describes_the_row(client, archive):
    image = get_json(client, "/api/v1/images/5")
    assert image["id"] == 5
    assert image["path"] == "Nachlass Müller/straße 1.jpg"
    assert image["file_name"] == "straße 1.jpg"
    assert image["size"] == len(archive.files[5])
    assert (image["width"], image["height"]) == (600, 400)
    assert image["status"] == OK and image["error"] is None
    assert image["updated_at"] == "2026-11-01T12:00:00Z"
    assert image["links"]["neighbours"] == "/api/v1/images/5/neighbours"
    assert image["links"]["file"] == "/images/5/file"
    failed = get_json(client, "/api/v1/images/7")
    assert failed["status"] == FAILED and failed["error"] == "cannot identify image file"


def test_lookup_by_name_returns_every_image_with_that_name(client):
    found = get_json(client, "/api/v1/images/lookup?name=duplicate.jpg")
    assert [image["path"] for image in found["images"]] == ["a/duplicate.jpg",
                                                           "b/duplicate.jpg"]
    first = get_json(client, "/api/v1/images/lookup?name=duplicate.jpg&limit=1")
    assert [image["id"] for image in first["images"]] == [3]
    rest = get_json(client, first["next"])
    assert [image["id"] for image in rest["images"]] == [4]


def test_lookup_by_path_handles_non_ascii(client):
    found = get_json(client, "/api/v1/images/lookup?path=Nachlass%20M%C3%BCller/"
                             "stra%C3%9Fe%201.jpg")
    assert [image["id"] for image in found["images"]] == [5]
    for query in ("path=flowers", "path=/flowers/rose.jpg", "name=rose", "name=ROSE.JPG"):
        assert get_json(client, f"/api/v1/images/lookup?{query}")["images"] == []


@pytest.mark.parametrize("query", ["", "path=a&name=b", "name=", "limit=5"])
def test_lookup_needs_exactly_one_of_path_and_name(client, query):
    assert "error" in get_json(client, f"/api/v1/images/lookup?{query}", 400)


def test_neighbours_equal_the_brute_force_lists(client, archive):
    for image_id, expected in archive.neighbours.items():
        page = get_json(client, f"/api/v1/images/{image_id}/neighbours?limit=100")
        assert page["next"] is None
        assert [(n["rank"], n["id"]) for n in page["neighbours"]] == \
            [(rank, j) for rank, (j, _) in enumerate(expected, 1)]
        assert [n["distance"] for n in page["neighbours"]] == \
            pytest.approx([d for _, d in expected], rel=1e-12)
        assert all(n["file_name"] == SPECS[n["id"] - 1].path.rsplit("/", 1)[-1]
                   for n in page["neighbours"])


def test_neighbours_page_by_limit_and_offset(client, archive):
    expected = [j for j, _ in archive.neighbours[1]]
    page = get_json(client, "/api/v1/images/1/neighbours?limit=2&offset=1")
    assert [n["id"] for n in page["neighbours"]] == expected[1:3]
    assert page["next"] == "/api/v1/images/1/neighbours?limit=2&offset=3"
    last = get_json(client, page["next"])
    assert [n["id"] for n in last["neighbours"]] == expected[3:]
    assert last["next"] is None
    default = get_json(client, "/api/v1/images/1/neighbours")
    assert (default["limit"], default["offset"]) == (20, 0)
    beyond = get_json(client, "/api/v1/images/1/neighbours?offset=100")
    assert beyond["neighbours"] == [] and beyond["next"] is None


def test_neighbours_in_the_learned_space(client, archive):
    for image_id, expected in archive.whitened.items():
        page = get_json(client, f"/api/v1/images/{image_id}/neighbours?limit=100"
                                "&space=whitened")
        assert page["space"] == "whitened"
        assert [(n["rank"], n["id"]) for n in page["neighbours"]] == \
            [(rank, j) for rank, (j, _) in enumerate(expected, 1)]
        assert [n["distance"] for n in page["neighbours"]] == \
            pytest.approx([d for _, d in expected], rel=1e-12)
    assert [j for j, _ in archive.whitened[1]] != [j for j, _ in archive.neighbours[1]]
    page = get_json(client, "/api/v1/images/1/neighbours?limit=2&space=whitened")
    assert page["next"] == "/api/v1/images/1/neighbours?limit=2&offset=2&space=whitened"
    assert [n["id"] for n in get_json(client, page["next"])["neighbours"]] == \
        [j for j, _ in archive.whitened[1]][2:4]
    # The default, named or not, is the original space; the original endpoint serves
    # nothing else.
    default = get_json(client, "/api/v1/images/1/neighbours?limit=100")
    assert default["space"] == "pool3" and default == {
        **get_json(client, "/api/v1/images/1/neighbours?limit=100&space=pool3"),
        "next": None}
    legacy = get_json(client, "/image_name_and_neighbours/1")
    assert [n["id"] for n in legacy[1]] == [j for j, _ in archive.neighbours[1]]


@pytest.mark.parametrize("space", ["other", "", "POOL3", "whitened "])
def test_an_unknown_space_is_a_400(client, space):
    body = get_json(client, f"/api/v1/images/1/neighbours?space={space}", 400)
    assert "space must be one of pool3, whitened" in body["error"]


def test_spaces_say_how_each_stands(client, archive):
    spaces = {s["name"]: s for s in get_json(client, "/api/v1/spaces")["spaces"]}
    assert list(spaces) == ["pool3", "whitened"]
    assert spaces["whitened"]["computed"] and spaces["whitened"]["dimensions"] == 16
    assert spaces["whitened"]["learned_from"] == len(archive.whitened)
    assert spaces["whitened"]["learned_at"] == "2026-11-01T12:00:00Z"
    assert spaces["pool3"]["computed"] and spaces["pool3"]["dimensions"] == 2048
    assert spaces["pool3"]["note"] is None


def test_a_space_not_computed_is_a_404_that_says_why(tmp_path):
    from db.engine import make_engine
    from db.spaces import save_space
    from service import create_app
    from service_support import build_archive, settings_for_archive
    archive = build_archive(f"sqlite:///{tmp_path / 'images.sqlite3'}", tmp_path,
                            whitened=False)
    client = create_app(settings_for_archive(archive, tmp_path / "cache")).test_client()
    body = get_json(client, "/api/v1/images/1/neighbours?space=whitened", 404)
    assert body["error"] == ("space whitened is not computed: the grouping job has not "
                             "run with it yet")
    engine = make_engine(archive.url)
    save_space(engine, "whitened", note="learning it needs at least 200 images")
    engine.dispose()
    body = get_json(client, "/api/v1/images/1/neighbours?space=whitened", 404)
    assert body["error"] == ("space whitened is not computed: learning it needs at least "
                             "200 images") and body["space"] == "whitened"
    spaces = {s["name"]: s for s in get_json(client, "/api/v1/spaces")["spaces"]}
    assert not spaces["whitened"]["computed"]
    assert spaces["whitened"]["note"] == "learning it needs at least 200 images"
    assert get_json(client, "/api/v1/images/1/neighbours")["space"] == "pool3"


@pytest.mark.parametrize("image_id, status", [(6, 404), (7, 404), (9, 404), (8, 410),
                                              (999, 404)])
def test_neighbours_of_images_without_a_list(client, image_id, status):
    error = get_json(client, f"/api/v1/images/{image_id}/neighbours", status)
    assert error["error"]


def test_features_are_the_stored_float32_values(client, archive):
    for image_id, vector in archive.vectors.items():
        values = get_json(client, f"/api/v1/images/{image_id}/features")
        assert len(values) == 2048
        assert np.array_equal(np.array(values, dtype=np.float32), vector)
    get_json(client, "/api/v1/images/7/features", 404)
    get_json(client, "/api/v1/images/8/features", 410)


def test_stats_count_statuses_and_show_the_last_runs(client):
    stats = get_json(client, "/api/v1/stats")
    statuses = [spec.status for spec in SPECS]
    assert stats["images"]["by_status"] == {s: statuses.count(s)
                                            for s in (PENDING, OK, FAILED, MISSING)}
    assert stats["images"]["total"] == len(SPECS)
    assert stats["jobs"]["features"]["outcome"] == "completed"
    assert stats["jobs"]["features"]["counts"] == {"new": 9, "failed": 1}
    grouping = stats["jobs"]["grouping"]
    assert (grouping["outcome"], grouping["started_at"]) == ("completed",
                                                            "2026-11-01T11:00:00Z")


def test_healthz(client):
    assert get_json(client, "/api/v1/healthz") == {"status": "ok"}
    assert get_json(client, "/healthz") == {"status": "ok"}


@pytest.mark.parametrize("url", ["/api/v1/images/1/neighbours", "/api/v1/images/1/features",
                                 "/image_name_and_neighbours/1", "/image_fingerprint/1",
                                 "/images/1/fingerprint.svg", "/images/1/fingerprint.png",
                                 "/images/1/thumbnail?size=128", "/images/1/file"])
def test_cacheable_responses_carry_etags_and_answer_304(client, url):
    first = client.get(url)
    assert first.status_code == 200
    assert first.headers["ETag"] and "max-age" in first.headers["Cache-Control"]
    again = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    changed = client.get(url, headers={"If-None-Match": '"something-else"'})
    assert changed.status_code == 200 and changed.data == first.data


@pytest.mark.parametrize("url", ["/api/v1/images/1/neighbours", "/image_name_and_neighbours/1"])
def test_lists_answer_the_other_conditional_headers_too(client, url):
    etag = client.get(url).headers["ETag"]
    assert client.get(url, headers={"If-Match": '"something-else"'}).status_code == 412
    assert client.get(url, headers={"If-Match": etag}).status_code == 200


def test_neighbour_links_follow_the_mount_point(client):
    body = client.get("/api/v1/images/1/neighbours?limit=2",
                      base_url="http://localhost/archive").get_json()
    entry = body["neighbours"][0]
    assert entry["links"] == {"self": f"/archive/api/v1/images/{entry['id']}",
                              "page": f"/archive/images/{entry['id']}",
                              "thumbnail": f"/archive/images/{entry['id']}/thumbnail?size=256"}
    assert body["next"] == "/archive/api/v1/images/1/neighbours?limit=2&offset=2"


def _validator(document, schema):
    return jsonschema_rs.validator_for({**schema, "components": document["components"]})


@pytest.mark.parametrize("url, path, status", [
    ("/api/v1/images?limit=3", "/api/v1/images", 200),
    ("/api/v1/images?limit=0", "/api/v1/images", 400),
    ("/api/v1/images/lookup?name=duplicate.jpg", "/api/v1/images/lookup", 200),
    ("/api/v1/images/1", "/api/v1/images/{image_id}", 200),
    ("/api/v1/images/7", "/api/v1/images/{image_id}", 200),
    ("/api/v1/images/8", "/api/v1/images/{image_id}", 410),
    ("/api/v1/images/999", "/api/v1/images/{image_id}", 404),
    ("/api/v1/images/1/neighbours?limit=100", "/api/v1/images/{image_id}/neighbours", 200),
    ("/api/v1/images/6/neighbours", "/api/v1/images/{image_id}/neighbours", 404),
    ("/api/v1/images/1/neighbours?space=whitened", "/api/v1/images/{image_id}/neighbours",
     200),
    ("/api/v1/images/1/neighbours?space=x", "/api/v1/images/{image_id}/neighbours", 400),
    ("/api/v1/spaces", "/api/v1/spaces", 200),
    ("/api/v1/images/2/features", "/api/v1/images/{image_id}/features", 200),
    ("/api/v1/stats", "/api/v1/stats", 200),
    ("/api/v1/healthz", "/api/v1/healthz", 200),
    ("/image_count", "/image_count", 200),
    ("/image_name/3", "/image_name/{image_id}", 200),
    ("/image_name_and_neighbours/3", "/image_name_and_neighbours/{image_id}", 200),
    ("/image_name_and_neighbours/x", "/image_name_and_neighbours/{image_id}", 400),
])
def test_responses_match_the_openapi_document(client, url, path, status):
    document = get_json(client, "/api/v1/openapi.json")
    response = client.get(url)
    assert response.status_code == status
    documented = document["paths"][path]["get"]["responses"][str(status)]
    if "$ref" in documented:
        documented = document["components"]["responses"][documented["$ref"].rsplit("/")[-1]]
    schema = documented["content"]["application/json"]["schema"]
    _validator(document, schema).validate(response.get_json())


def test_openapi_document_lists_every_route(app, client):
    document = get_json(client, "/api/v1/openapi.json")
    assert document["openapi"].startswith("3.1")
    routes = {re.sub(r"<(?:path:)?(\w+)>", r"{\1}", rule.rule)
              .replace("{quality_format}", "{quality}.{format}")  # one segment, split by IIIF
              for rule in app.url_map.iter_rules()
              if rule.endpoint.split(".")[0] in ("api", "legacy", "media", "iiif",
                                                 "manifests")}
    routes -= {"/healthz", "/api/v1/openapi.json"}  # the document itself; an alias
    assert routes == set(document["paths"])
    for name, schema in document["components"]["schemas"].items():
        jsonschema_rs.meta.validate(schema)  # each schema is valid JSON Schema
