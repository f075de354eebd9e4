"""The archivists' pages in a real headless Chromium, served by gunicorn.

Uses Debian's chromium (CHROMIUM_PATH, default /usr/bin/chromium) through Playwright;
no browser is downloaded. Screenshots go to artifacts/. Without Chromium the test is
skipped, unless REQUIRE_BROWSER=1 (CI), where it fails.
"""
from __future__ import annotations

import io
import json
import re
from collections import Counter
import urllib.request

import pytest

from browser_support import ARTIFACTS, BROWSER_SPECS

pytestmark = pytest.mark.browser


def _loaded_images(page, selector: str) -> int:
    """Return how many images matching `selector` have been decoded."""
    return page.eval_on_selector_all(
        selector, "images => images.filter(i => i.complete && i.naturalWidth > 0).length")


def links(page, grid: str) -> list[str]:
    """Return the targets of the grid's shown links, in order, without their query."""
    return page.eval_on_selector_all(
        grid + ":not([hidden]) a", "links => links.map(a => a.href.split('?')[0])")


SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


def new_page(browser, size: str):
    """Return a page at the issue's desktop or phone size."""
    if size == "phone":
        context = browser.new_context(viewport=SIZES[size], device_scale_factor=2,
                                      is_mobile=True, has_touch=True)
    else:
        context = browser.new_context(viewport=SIZES[size])
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    return page


def no_broken_images(page) -> None:
    """Assert that every picture on the page that finished loading shows pixels."""
    page.wait_for_load_state("load")
    broken = page.eval_on_selector_all(
        "img", "imgs => imgs.filter(i => i.complete && i.naturalWidth === 0 && "
               "i.getAttribute('src')).map(i => i.src)")
    assert broken == []


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
    assert page.locator(grid + ":not([hidden])").count() == 20, page.inner_text("main")
    page.wait_for_function("document.querySelector('#main-image').naturalWidth > 0")
    page.wait_for_function(
        "[...document.querySelectorAll('#neighbour-grid img')].slice(0, 8)"
        ".every(i => i.complete && i.naturalWidth > 0)")
    page.click(".fingerprint summary")  # the plot is behind a click, under the details
    page.wait_for_function("document.querySelector('.fingerprint img').naturalWidth > 0")
    page.screenshot(path=str(ARTIFACTS / "image.png"), full_page=True)

    while page.locator("#more").count():
        page.click("#more")
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


SEARCH_GRID = "#neighbour-grid li.neighbour"


def _watch_busy(page) -> None:
    """Record in the page whether the search button was ever disabled, reading
    "Searching…"."""
    page.evaluate("""() => {
        const button = document.getElementById("search-button");
        window.busySeen = false;
        new MutationObserver(() => {
            if (button.disabled && button.textContent.startsWith("Searching")) window.busySeen = true;
        }).observe(button, {attributes: true, childList: true, characterData: true, subtree: true});
    }""")


def _answered(page) -> None:
    page.wait_for_function("!document.getElementById('search-button').disabled",
                           timeout=120_000)


def test_the_model_loads_in_the_background_when_the_worker_starts(pages_server, browser):
    base, _ = pages_server
    page = new_page(browser, "desktop")
    # No search has run on this worker yet: the model loads all the same, and the page
    # stops warning about it.
    for _ in range(240):
        page.goto(base + "/search-by-image")
        if "still loading" not in page.inner_text("#search-status"):
            break
        page.wait_for_timeout(500)
    else:
        pytest.fail("the model did not load within 2 minutes without a search")
    page.context.close()


@pytest.mark.parametrize("size", SIZES)
def test_search_by_image_through_the_page(pages_server, browser, tmp_path, size):
    base, archive = pages_server
    ARTIFACTS.mkdir(exist_ok=True)
    upload = tmp_path / "upload.jpg"
    upload.write_bytes(archive.files[2])
    expected = _api_search(base, archive.files[2])
    assert len(expected) == 20

    page = new_page(browser, size)
    page.goto(base + "/")
    page.click("#search-by-image-link")
    page.wait_for_url(base + "/search-by-image")
    # A phone is offered its camera directly.
    assert page.get_attribute("#camera-input", "capture") == "environment"
    assert page.is_visible("label.camera") == (size == "phone")
    # The similarity first (the fixture's whitened space has lists but no projection to
    # search with), then the file: searched at once, in place, with a busy state.
    page.select_option("select[name=space]", "pool3")
    _watch_busy(page)
    url = page.url
    page.set_input_files("#image-input", str(upload))
    _answered(page)
    assert page.evaluate("window.busySeen") and page.url == url
    assert links(page, SEARCH_GRID) == expected
    page.wait_for_function("document.querySelector('#query-image').naturalWidth > 0")
    page.screenshot(path=str(ARTIFACTS / f"search-by-image-{size}.png"), full_page=True)
    # The titles and links of the cards: the searched space kept on each link.
    hrefs = page.eval_on_selector_all(SEARCH_GRID + " a", "l => l.map(a => a.href)")
    assert all(h.endswith("?space=pool3") for h in hrefs)

    # Another similarity searches the same picture again, without choosing it again.
    page.select_option("select[name=space]", "whitened")
    _answered(page)
    assert "no search vectors" in page.inner_text("#search-error")
    page.select_option("select[name=space]", "pool3")
    _answered(page)
    assert links(page, SEARCH_GRID) == expected

    # Pasting and dropping search at once too.
    for script in ("""bytes => {
            const file = new File([new Uint8Array(bytes)], "pasted.jpg", {type: "image/jpeg"});
            const data = new DataTransfer();
            data.items.add(file);
            document.dispatchEvent(new ClipboardEvent("paste", {clipboardData: data}));
        }""", """bytes => {
            const file = new File([new Uint8Array(bytes)], "dropped.jpg", {type: "image/jpeg"});
            const data = new DataTransfer();
            data.items.add(file);
            document.getElementById("drop-zone").dispatchEvent(
                new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
        }"""):
        page.goto(base + "/search-by-image")
        page.select_option("select[name=space]", "pool3")
        page.evaluate(script, list(archive.files[2]))
        page.wait_for_selector(SEARCH_GRID, timeout=120_000)
        _answered(page)
        assert links(page, SEARCH_GRID) == expected
    assert page.errors == []
    page.context.close()


def test_a_large_photo_is_scaled_down_before_it_is_sent(pages_server, browser, tmp_path):
    from PIL import Image
    base, archive = pages_server
    big = tmp_path / "big.jpg"
    Image.open(io.BytesIO(archive.files[2])).resize((4000, 3000)).save(big, quality=95)
    page = new_page(browser, "phone")
    page.goto(base + "/search-by-image")
    page.select_option("select[name=space]", "pool3")
    sent = []
    page.on("request", lambda r: sent.append(len(r.post_data_buffer or b""))
            if r.method == "POST" else None)
    page.set_input_files("#image-input", str(big))
    page.wait_for_selector(SEARCH_GRID, timeout=120_000)
    _answered(page)
    assert len(sent) == 1 and sent[0] < big.stat().st_size / 2
    caption = page.inner_text("#query-caption")  # the server saw the scaled copy
    assert "1600 × 1200 pixels" in caption, caption
    assert len(links(page, SEARCH_GRID)) == 20
    page.context.close()

    # Without JavaScript: the plain form post.
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(base + "/search-by-image")
    page.select_option("select[name=space]", "pool3")
    page.set_input_files("#image-input", str(big))
    with page.expect_navigation(timeout=120_000):
        page.click("#upload-form button[type=submit]")
    assert links(page, SEARCH_GRID) == _api_search(base, big.read_bytes())
    assert page.get_attribute("#query-image", "src").startswith("data:image/jpeg;base64,")
    assert "4000 × 3000 pixels" in page.inner_text("#query-caption")
    context.close()


WORDS = {"identical", "near-duplicate", "very similar", "similar", "less similar"}
# A card's parts but its folder, which shows where names repeat.
CARD_FORM = """cards => cards.map(li => [...li.querySelector('a').children]
    .filter(c => c.className !== 'folder').map(c => c.tagName + '.' + c.className).join(' '))"""


@pytest.mark.parametrize("size", SIZES)
def test_the_image_page_at_both_sizes(pages_server, browser, size):
    base, archive = pages_server
    ARTIFACTS.mkdir(exist_ok=True)
    page = new_page(browser, size)
    grid = "#neighbour-grid li.neighbour"
    page.goto(base + "/images/2?space=pool3")
    page.wait_for_function(
        "[...document.querySelectorAll('#neighbour-grid img')].slice(0, 4)"
        ".every(i => i.complete && i.naturalWidth > 0)")
    # The neighbours come right under the image: the first is on the first screen.
    top = page.eval_on_selector(grid, "li => li.getBoundingClientRect().top")
    assert top < SIZES[size]["height"] - 100, top
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # Distances in words, the number on hover.
    distance = page.locator(f"{grid} .distance").first
    first = archive.neighbours[2][0][1]
    assert distance.inner_text() in WORDS
    assert distance.get_attribute("title") == f"distance {first:.4g} (Original similarity)"
    page.screenshot(path=str(ARTIFACTS / f"image-{size}.png"))

    # "Show more" cards are the first ones' equals, in form and in size.
    page.click("#more")
    shown = page.locator(grid + ":not([hidden])")
    assert shown.count() > 20
    forms = page.eval_on_selector_all(grid + ":not([hidden])", CARD_FORM)
    assert set(forms) == {forms[0]}
    widths = page.eval_on_selector_all(grid + ":not([hidden])",
                                       "l => l.map(li => Math.round(li.offsetWidth))")
    assert set(widths) == {widths[0]}
    names = page.eval_on_selector_all(grid + ":not([hidden])", """l => l.map(li =>
        [li.querySelector('.name').textContent, !!li.querySelector('.folder')])""")
    counts = Counter(name for name, _ in names)
    assert [with_folder for _, with_folder in names] == [counts[n] > 1 for n, _ in names]

    # A followed neighbour keeps the space.
    target = archive.neighbours[2][2][0]
    page.click(f"{grid} >> nth=2")
    page.wait_for_url(f"{base}/images/{target}?space=pool3")
    assert page.get_attribute("#space-pool3", "aria-current") == "page"

    # Only one folder's images among the neighbours.
    page.select_option("select[name=folder]", "series")
    page.wait_for_url(f"**/images/{target}?space=pool3&folder=series*")
    folders = page.eval_on_selector_all(grid, "l => l.map(li => li.dataset.folder)")
    expected = [j for j, _ in archive.neighbours[target]
                if BROWSER_SPECS[j - 1].path.startswith("series/")]
    assert folders == ["series"] * len(expected) and len(expected) > 1
    assert links(page, grid) == [f"{base}/images/{j}" for j in expected]
    no_broken_images(page)
    assert page.errors == []
    page.context.close()


@pytest.mark.parametrize("size", SIZES)
def test_failed_files_are_explained_never_broken_images(pages_server, browser, size):
    base, _ = pages_server
    page = new_page(browser, size)
    page.goto(base + "/")
    first = int(page.get_attribute("#first-link", "href").rsplit("/", 1)[-1])
    assert BROWSER_SPECS[first - 1].status == "ok"
    failed = [i for i, s in enumerate(BROWSER_SPECS, 1) if s.status == "failed"]
    assert page.inner_text("#count-failed") == f"{len(failed)} failed"
    page.click("#count-failed")
    page.wait_for_url(base + "/browse?status=failed")
    cards = "#gallery li.neighbour"
    assert page.eval_on_selector_all(cards, "l => l.map(li => +li.querySelector('a')"
                                     ".href.split('/').pop())") == failed
    notes = page.eval_on_selector_all(cards + " .no-picture", "l => l.map(n => n.textContent)")
    assert notes == [f"Failed: {BROWSER_SPECS[i - 1].error}" for i in failed]
    assert page.locator(cards + " img").count() == 0
    page.screenshot(path=str(ARTIFACTS / f"browse-failed-{size}.png"), full_page=True)

    # All of the collection: the failed and missing files' cards have no picture, the
    # others' pictures all show.
    page.goto(base + "/browse")
    page.wait_for_load_state("load")
    for _ in range(3):
        page.mouse.wheel(0, 2000)
    page.wait_for_function("[...document.querySelectorAll('#gallery img')]"
                           ".every(i => i.complete)")
    no_broken_images(page)

    # A failed image's page: its reason, no picture, no similarity switch.
    page.goto(f"{base}/images/{failed[0]}")
    assert BROWSER_SPECS[failed[0] - 1].error in page.inner_text("#failed")
    assert page.locator("#main-image, .space-switch").count() == 0
    no_broken_images(page)
    assert page.errors == []
    page.context.close()


def test_arrow_keys_skip_link_and_favicon(pages_server, browser):
    base, _ = pages_server
    page = new_page(browser, "desktop")
    page.goto(base + "/browse?limit=5")
    page.keyboard.press("ArrowRight")
    page.wait_for_url("**/browse?*limit=5&after=5")
    page.keyboard.press("ArrowLeft")
    page.wait_for_url("**/browse?*limit=5&before=6")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    icon = page.get_attribute("link[rel=icon]", "href")
    with urllib.request.urlopen(base + icon) as response:
        assert response.headers["Content-Type"].startswith("image/svg+xml")
    page.context.close()
