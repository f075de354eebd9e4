"""The archivists' pages in a real headless Chromium, served by gunicorn.

Uses Debian's chromium (CHROMIUM_PATH, default /usr/bin/chromium) through Playwright;
no browser is downloaded. Screenshots go to artifacts/. Without Chromium the test is
skipped, unless REQUIRE_BROWSER=1 (CI), where it fails.
"""
from __future__ import annotations

import json
import re
import urllib.request

import pytest

from browser_support import ARTIFACTS, BROWSER_SPECS

pytestmark = pytest.mark.browser


def _loaded_images(page, selector: str) -> int:
    """Return how many images matching `selector` have been decoded."""
    return page.eval_on_selector_all(
        selector, "images => images.filter(i => i.complete && i.naturalWidth > 0).length")


def links(page, grid: str) -> list[str]:
    """Return the targets of the grid's links, in order."""
    return page.eval_on_selector_all(grid + " a", "links => links.map(a => a.href)")


def test_search_open_neighbours_and_keyboard(pages_server, browser):
    base, archive = pages_server
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(base + "/")
    assert f"{len(BROWSER_SPECS)} images in the archive" in page.inner_text("main")
    page.screenshot(path=str(ARTIFACTS / "home.png"), full_page=True)

    page.fill("input[name=q]", "tulip")
    page.press("input[name=q]", "Enter")
    page.wait_for_url(base + "/images/2")
    assert "tulip.jpg" in page.inner_text("h1")

    grid = "#neighbour-grid li.neighbour"
    expected = [j for j, _ in archive.whitened[2]]  # the improved similarity first
    assert page.locator(grid).count() == 20, page.inner_text("main")
    page.wait_for_function("document.querySelector('#main-image').naturalWidth > 0")
    page.wait_for_function(
        "[...document.querySelectorAll('#neighbour-grid img')].slice(0, 8)"
        ".every(i => i.complete && i.naturalWidth > 0)")
    assert page.eval_on_selector(".fingerprint img", "i => i.naturalWidth") > 0
    page.screenshot(path=str(ARTIFACTS / "image.png"), full_page=True)

    page.click("#more")
    page.wait_for_function(f"document.querySelectorAll('{grid}').length === {len(expected)}")
    hrefs = links(page, grid)
    assert hrefs == [f"{base}/images/{j}" for j in expected]
    assert page.locator("#more").count() == 0  # the whole list is shown

    # The switch to the original distance changes the grid and the URL; back undoes it.
    page.click("#space-pool3")
    page.wait_for_url(base + "/images/2?space=pool3")
    original = [j for j, _ in archive.neighbours[2]]
    assert links(page, grid) == [f"{base}/images/{j}" for j in original[:20]] != hrefs[:20]
    assert page.get_attribute("#space-pool3", "aria-current") == "page"
    page.screenshot(path=str(ARTIFACTS / "image-original-space.png"), full_page=True)
    page.go_back()
    page.wait_for_url(base + "/images/2")
    assert links(page, grid) == hrefs[:20]
    assert page.get_attribute("#space-whitened", "aria-current") == "page"

    page.keyboard.press("ArrowRight")
    page.wait_for_url(base + "/images/3")
    page.keyboard.press("ArrowLeft")
    page.wait_for_url(base + "/images/2")
    with page.expect_navigation():
        page.keyboard.press("r")
    assert re.fullmatch(re.escape(base) + r"/images/\d+", page.url)
    image_id = int(page.url.rsplit("/", 1)[-1])
    assert BROWSER_SPECS[image_id - 1].status == "ok"

    page.focus("input[name=q]")  # typing in the search box does not navigate
    page.keyboard.press("r")
    page.wait_for_timeout(300)
    assert page.url.endswith(f"/images/{image_id}")
    assert errors == []
    page.close()


def test_phone_layout_and_clear_error_pages(pages_server, browser):
    base, _ = pages_server
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 390, "height": 844},
                                  device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(base + "/images/1")
    page.wait_for_function(
        "[...document.querySelectorAll('#neighbour-grid img')].slice(0, 4)"
        ".every(i => i.complete && i.naturalWidth > 0)")
    # Nothing wider than the phone's screen: no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(ARTIFACTS / "image-phone.png"), full_page=True)

    response = page.goto(base + "/images/8")
    assert response.status == 410
    assert "missing from the archive" in page.inner_text("main")
    response = page.goto(base + "/images/123456")
    assert response.status == 404 and "There is no image with id 123456" in page.inner_text("main")
    response = page.goto(base + "/images/abc")
    assert response.status == 400 and "Bad request" in page.inner_text("h1")
    page.screenshot(path=str(ARTIFACTS / "error-phone.png"))
    context.close()


def _api_search(base: str, data: bytes) -> list[str]:
    """Return the page links of the JSON search's answer for these bytes."""
    request = urllib.request.Request(base + "/api/v1/search", data=data,
                                     headers={"Content-Type": "image/jpeg"})
    with urllib.request.urlopen(request, timeout=120) as response:
        body = json.loads(response.read())
    return [base + entry["links"]["page"] for entry in body["neighbours"]]


def test_search_by_image_through_the_page(pages_server, browser, tmp_path):
    base, archive = pages_server
    ARTIFACTS.mkdir(exist_ok=True)
    upload = tmp_path / "upload.jpg"
    upload.write_bytes(archive.files[2])
    expected = _api_search(base, archive.files[2])
    assert len(expected) == 20
    grid = "#neighbour-grid li.neighbour"

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(base + "/")
    page.click("#search-by-image-link")
    page.wait_for_url(base + "/search-by-image")
    # The fixture's whitened space has lists but no projection to search with.
    page.select_option("select[name=space]", "pool3")
    # Choosing a file sends the form at once (the script); the results are the API's.
    with page.expect_navigation(timeout=120_000):
        page.set_input_files("#image-input", str(upload))
    assert page.locator(grid).count() == 20, page.inner_text("main")
    assert links(page, grid) == expected
    page.wait_for_function("document.querySelector('#query-image').naturalWidth > 0")
    page.screenshot(path=str(ARTIFACTS / "search-by-image.png"), full_page=True)

    # Pasting an image from the clipboard does the same.
    page.goto(base + "/search-by-image")
    page.select_option("select[name=space]", "pool3")
    with page.expect_navigation(timeout=120_000):
        page.evaluate("""bytes => {
            const file = new File([new Uint8Array(bytes)], "pasted.jpg", {type: "image/jpeg"});
            const data = new DataTransfer();
            data.items.add(file);
            document.dispatchEvent(new ClipboardEvent("paste", {clipboardData: data}));
        }""", list(archive.files[2]))
    assert links(page, grid) == expected
    # And dropping a file on the drop zone.
    page.goto(base + "/search-by-image")
    page.select_option("select[name=space]", "pool3")
    with page.expect_navigation(timeout=120_000):
        page.evaluate("""bytes => {
            const file = new File([new Uint8Array(bytes)], "dropped.jpg", {type: "image/jpeg"});
            const data = new DataTransfer();
            data.items.add(file);
            document.getElementById("drop-zone").dispatchEvent(
                new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
        }""", list(archive.files[2]))
    assert links(page, grid) == expected
    assert errors == []
    page.close()

    # Without JavaScript: the plain form post.
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(base + "/search-by-image")
    page.select_option("select[name=space]", "pool3")
    page.set_input_files("#image-input", str(upload))
    with page.expect_navigation(timeout=120_000):
        page.click("#upload-form button[type=submit]")
    assert links(page, grid) == expected
    assert page.get_attribute("#query-image", "src").startswith("data:image/jpeg;base64,")
    context.close()
