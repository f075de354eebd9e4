"""A real IIIF client: OpenSeadragon (from the npm registry, installed into
tests/viewer/node_modules by scripts/test.sh) opens the validator's grid image through the
IIIF endpoint of gunicorn, from another origin, in headless Chromium; and the image page's
IIIF links resolve."""
from __future__ import annotations

import contextlib
import functools
import http.server
import os
import threading
from pathlib import Path

import pytest
from iiif_validator.validator import ValidationInfo

pytestmark = pytest.mark.browser

VIEWER = Path(__file__).resolve().parent.parent / "viewer"


def _viewer_files() -> Path:
    script = VIEWER / "node_modules/openseadragon/build/openseadragon/openseadragon.min.js"
    if not script.is_file():
        message = "OpenSeadragon is not installed: run scripts/test.sh (npm ci in tests/viewer)"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return VIEWER


@contextlib.contextmanager
def _static_site(folder: Path):
    """Yield the base URL of a loopback web server of `folder`: a site of its own, so the
    viewer reads the service across origins, as from a portal."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_openseadragon_shows_an_image_through_iiif(iiif_server, browser):
    base, image_id = iiif_server
    page = browser.new_page()
    errors, iiif = [], []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text))
    page.on("response", lambda response: iiif.append((response.url, response.status))
            if "/iiif/3/" in response.url else None)
    with _static_site(_viewer_files()) as site:
        page.goto(f"{site}/osd.html?info={base}/iiif/3/{image_id}/info.json")
        page.wait_for_function("window.state.failed !== null || "
                               "(window.state.opened && window.viewer.world.getItemAt(0)"
                               " && window.viewer.world.getItemAt(0).getFullyLoaded())",
                               timeout=20000)
    assert page.evaluate("window.state.failed") is None, errors
    assert not errors
    tiles = [url for url, _ in iiif if url.endswith("/default.jpg")]
    assert tiles and page.evaluate("window.state.tiles") == len(tiles)
    assert all(status == 200 for _, status in iiif), iiif
    # The image fills the viewer's middle: the pixel there is the grid's square (5, 5).
    pixel = page.evaluate("""() => {
        const canvas = window.viewer.drawer.canvas;
        const x = Math.floor(canvas.width / 2) + 5, y = Math.floor(canvas.height / 2) + 5;
        return Array.from(canvas.getContext('2d').getImageData(x, y, 1, 1).data); }""")
    expected = ValidationInfo().colorInfo[5][5]
    assert all(abs(a - b) <= 12 for a, b in zip(pixel[:3], expected)), (pixel, expected)
    page.close()


def test_the_image_pages_iiif_links_resolve(iiif_server, browser):
    base, _ = iiif_server
    page = browser.new_page()
    page.goto(f"{base}/images/1")
    hrefs = page.eval_on_selector_all("#iiif-links a", "links => links.map(a => a.href)")
    assert [href.removeprefix(base) for href in hrefs] == [
        "/iiif/3/1/info.json", "/iiif/manifests/1", "/iiif/manifests/1/neighbours?space=pool3"]
    for href in hrefs:
        response = page.request.get(href)
        assert response.status == 200, href
        body = response.json()
        assert body["id"].startswith(base) and body["type"] in ("ImageService3", "Manifest")
    page.close()
