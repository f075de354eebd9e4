"""The service's IIIF images: the file a redirect to its server, thumbnails made from the
fetched image and cached like a file's, the API naming the source manifest."""
from __future__ import annotations

import io

from PIL import Image as PILImage

from features_support import ROOT


def test_file_redirects_to_the_iiif_server(iiif_app):
    client, server = iiif_app
    found = client.get("/api/v1/images?limit=10").get_json()
    images = {image["iiif"]["image_service"]: image for image in found["images"]}
    cat = images[server.service("cat")]
    assert cat["iiif"] == {"manifest": server.base + "/manifests/m.json",
                           "canvas": server.base + "/manifests/m.json/canvas/c1",
                           "image_service": server.service("cat"),
                           "image": server.service("cat") + "/full/max/0/default.jpg"}
    response = client.get(f"/images/{cat['id']}/file")
    assert response.status_code == 302
    assert response.headers["Location"] == cat["iiif"]["image"]
    assert "max-age=86400" in response.headers["Cache-Control"]


def test_thumbnail_is_made_from_the_fetched_image_and_cached(iiif_app):
    client, server = iiif_app
    found = client.get("/api/v1/images?limit=10").get_json()
    man = next(i for i in found["images"] if i["iiif"]["image_service"] == server.service("man"))
    server.state.clear_log()
    first = client.get(f"/images/{man['id']}/thumbnail?size=128")
    assert first.status_code == 200 and first.mimetype == "image/jpeg"
    with PILImage.open(io.BytesIO(first.data)) as thumb, \
            PILImage.open(ROOT / "sample_images/people/astronaut.jpg") as original:
        assert max(thumb.size) == 128
        assert abs(thumb.width / thumb.height - original.width / original.height) < 0.02
    again = client.get(f"/images/{man['id']}/thumbnail?size=128")
    assert again.status_code == 200 and again.data == first.data
    assert len(server.state.image_requests()) == 1  # the second from the cache
    server.state.faults["cat"] = "404"
    cat = next(i for i in found["images"] if i["iiif"]["image_service"] == server.service("cat"))
    failed = client.get(f"/images/{cat['id']}/thumbnail?size=128")
    assert failed.status_code == 502 and "HTTP 404" in failed.get_json()["error"]


def test_the_image_api_refuses_a_iiif_image_cleanly(iiif_app):
    """/iiif/3/<id> serves files under IMAGE_ROOT; an image of another IIIF server is
    not one of them: a 4xx with a JSON message, never a 500."""
    client, server = iiif_app
    found = client.get("/api/v1/images?limit=10").get_json()
    image_id = found["images"][0]["id"]
    for path in ("info.json", "full/max/0/default.jpg"):
        response = client.get(f"/iiif/3/{image_id}/{path}")
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert response.get_json()["error"]


def test_the_image_page_links_a_iiif_image_to_its_source(iiif_app):
    """The page of an image from a IIIF collection links its manifest and image service
    there, not this service's IIIF endpoints (which serve files on disk only)."""
    client, server = iiif_app
    found = client.get("/api/v1/images?limit=10").get_json()
    cat = next(i for i in found["images"] if i["iiif"]["image_service"] == server.service("cat"))
    html = client.get(f"/images/{cat['id']}").get_data(as_text=True)
    assert f'<a href="{cat["iiif"]["manifest"]}" rel="noopener noreferrer">IIIF manifest</a>' \
        in html
    assert f'<a href="{server.service("cat")}"' in html
    assert 'id="iiif-links"' not in html
