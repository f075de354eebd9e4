"""IIIF Presentation 3.0 manifests of an image and of its neighbours: valid by the IIIF
consortium's Presentation 3 JSON schema, labelled from the catalogue, their canvases
painted by images the service really serves; on SQLite and MariaDB.

iiif_presentation_3.schema.json is schema/iiif_3_0.json of github.com/IIIF/
presentation-validator at commit fb5bd9039494701dc7472cdcaffe83fb5a212463. (iiif-prezi3,
which builds manifests from pydantic models, needs Pillow <= 12.0; the project has 13.)
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema_rs
import pytest
from PIL import Image as PILImage

from service_support import SPECS

SCHEMA = jsonschema_rs.Draft7Validator(
    json.loads((Path(__file__).with_name("iiif_presentation_3.schema.json")).read_text()))
ROSE, TULIP, SCRIPT = 1, 2, 2 + len(SPECS)  # test_browse's catalogue records


def _valid(manifest: dict) -> dict:
    errors = [f"{error.instance_path}: {error.message}" for error in SCHEMA.iter_errors(manifest)]
    assert not errors, errors[:5]
    return manifest


def _painted(client, canvas: dict) -> PILImage.Image:
    """Return the image a canvas's painting annotation shows, as served."""
    body = canvas["items"][0]["items"][0]["body"]
    assert body["service"][0]["id"] == body["id"].split("/full/")[0]
    response = client.get(body["id"].removeprefix("http://localhost"))
    assert response.status_code == 200
    picture = PILImage.open(io.BytesIO(response.data))
    assert picture.size == (canvas["width"], canvas["height"]) == (body["width"],
                                                                   body["height"])
    return picture


def test_the_catalogue_labels_an_images_manifest(browse_client):
    manifest = _valid(browse_client.get(f"/iiif/manifests/{ROSE}").get_json())
    assert manifest["id"] == f"http://localhost/iiif/manifests/{ROSE}"
    assert manifest["label"] == {"none": ["Rosa canina"]}
    fields = {entry["label"]["en"][0]: entry["value"]["none"][0]
              for entry in manifest["metadata"]}
    assert fields == {"File": "flowers/rose.jpg", "Catalogue id": "K-1",
                      "Title": "Rosa canina", "Signatur": "R 1"}
    assert [page["id"] for page in manifest["homepage"]] == [
        "https://catalogue.example/K-1", f"http://localhost/images/{ROSE}"]
    (canvas,) = manifest["items"]
    assert canvas["items"][0]["items"][0]["target"] == canvas["id"]
    _painted(browse_client, canvas)


def test_without_a_record_the_file_name_labels_it(browse_client):
    manifest = _valid(browse_client.get("/iiif/manifests/3").get_json())
    assert manifest["label"] == {"none": ["duplicate.jpg"]}
    assert [page["id"] for page in manifest["homepage"]] == ["http://localhost/images/3"]


def test_a_record_url_that_is_no_web_address_is_no_homepage(browse_client):
    manifest = _valid(browse_client.get(f"/iiif/manifests/{SCRIPT}").get_json())
    assert manifest["label"] == {"none": ["Script"]}
    assert all(not page["id"].startswith("javascript") for page in manifest["homepage"])


def test_the_canvas_of_a_turned_image_is_upright(client):
    canvas = _valid(client.get("/iiif/manifests/5").get_json())["items"][0]
    assert (canvas["width"], canvas["height"]) == (400, 600)
    _painted(client, canvas)


@pytest.mark.parametrize("space", ["pool3", "whitened"])
def test_the_neighbours_manifest_lists_them_nearest_first(client, archive, space):
    lists = archive.neighbours if space == "pool3" else archive.whitened
    response = client.get(f"/iiif/manifests/1/neighbours?space={space}&limit=4")
    manifest = _valid(response.get_json())
    assert manifest["id"] == f"http://localhost/iiif/manifests/1/neighbours/{space}"
    expected = [(i, d) for i, d in lists[1][:4] if SPECS[i - 1].file == "jpeg"]
    got = []
    for canvas in manifest["items"]:
        fields = {entry["label"]["en"][0]: entry["value"]["none"][0]
                  for entry in canvas["metadata"]}
        got.append((int(canvas["id"].rsplit("/", 1)[1]), float(fields["Distance"])))
        assert fields["Space"] == space
        _painted(client, canvas)
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert [d for _, d in got] == pytest.approx([d for _, d in expected], abs=1e-4)


def test_neighbours_manifest_of_the_browse_archive_with_titles(browse_client, browse_archive):
    manifest = _valid(browse_client.get(f"/iiif/manifests/{TULIP}/neighbours").get_json())
    assert manifest["label"] == {"en": ["Images similar to <b>Tulipa</b> & Co"]}
    assert len(manifest["items"]) == 20


@pytest.mark.parametrize("url,status", [
    ("/iiif/manifests/99999", 404), ("/iiif/manifests/abc", 400),
    ("/iiif/manifests/8", 410),                  # its file is gone
    ("/iiif/manifests/9/neighbours", 404),       # pending: no neighbours yet
    ("/iiif/manifests/1/neighbours?space=nope", 400),
    ("/iiif/manifests/1/neighbours?limit=0", 400),
    ("/iiif/manifests/1/neighbours?limit=101", 400),
])
def test_manifest_errors(client, url, status):
    response = client.get(url)
    assert response.status_code == status and response.get_json()["error"]


def test_the_api_links_the_manifests(client):
    body = client.get("/api/v1/images/1").get_json()
    assert body["manifests"] == {"image": "/iiif/manifests/1",
                                 "neighbours": "/iiif/manifests/1/neighbours"}
    assert client.get(body["manifests"]["image"]).status_code == 200
    assert client.get(body["manifests"]["neighbours"]).status_code == 200


def test_the_schema_notices_a_broken_manifest(client):
    # A control: the schema is strict enough to fail a manifest missing a canvas's size.
    manifest = client.get("/iiif/manifests/1").get_json()
    del manifest["items"][0]["width"]
    assert not SCHEMA.is_valid(manifest)
