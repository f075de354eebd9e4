"""The duplicates page in a real headless Chromium, served by gunicorn, over the sample
images with their real features (tests/service/test_browser.py says how the browser is
run)."""
from __future__ import annotations


import pytest

from browser_support import ARTIFACTS
from samples_support import SAMPLES

pytestmark = pytest.mark.browser


def test_the_duplicates_page_shows_groups_side_by_side_and_pages(duplicates_server,
                                                                 browser):
    base = duplicates_server
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(base + "/")
    page.click("#duplicates-link")
    page.wait_for_url(base + "/duplicates")
    groups = page.locator("li.duplicate-group")
    assert groups.count() >= 5
    sizes = [groups.nth(i).locator("li.neighbour").count() for i in range(groups.count())]
    assert sizes == sorted(sizes, reverse=True) and min(sizes) >= 2  # largest first
    # The thumbnails of the largest group load and sit side by side, on one row.
    first = "li.duplicate-group:first-child li.neighbour img"
    page.wait_for_function(f"[...document.querySelectorAll('{first}')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    tops = page.eval_on_selector_all(first, "imgs => imgs.map(i => i.getBoundingClientRect().top)")
    lefts = page.eval_on_selector_all(first, "imgs => imgs.map(i => i.getBoundingClientRect().left)")
    assert len(set(round(t) for t in tops)) == 1 and lefts == sorted(lefts)
    assert "coffee.jpg" in page.inner_text("li.duplicate-group:first-child")
    page.screenshot(path=str(ARTIFACTS / "duplicates.png"), full_page=True)

    # Two groups a page: forward, back, then a smaller distance from the form.
    page.goto(base + "/duplicates?limit=2")
    shown = page.inner_text("li.duplicate-group:first-child h2")
    page.click("#next-groups")
    page.wait_for_url("**/duplicates?*start=2*")
    assert page.inner_text("li.duplicate-group:first-child h2").startswith("Group 3")
    page.click("#previous-groups")
    page.wait_for_url("**/duplicates?*start=0*")
    assert page.inner_text("li.duplicate-group:first-child h2") == shown
    page.fill("input[name=max_distance]", "3")
    page.click(".duplicates-form button")
    page.wait_for_url("**/duplicates?*max_distance=3*")
    assert page.locator("li.duplicate-group").count() < len(sizes)

    # A thumbnail leads to the image page.
    page.click("li.duplicate-group:first-child li.neighbour a >> nth=0")
    page.wait_for_url("**/images/*")
    page.wait_for_function("document.querySelector('#main-image').naturalWidth > 0")
    assert errors == []
    page.close()


SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
SCREENSHOTS = ARTIFACTS / "screenshots"  # copied to docs/screenshots/ by hand


@pytest.mark.parametrize("size", SIZES)
def test_the_main_pages_over_real_photos_at_both_sizes(duplicates_server, browser, size):
    base = duplicates_server
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    options = {"viewport": SIZES[size]}
    if size == "phone":
        options.update(device_scale_factor=2, is_mobile=True, has_touch=True)
    context = browser.new_context(**options)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def shows_all_pictures():
        # Those shown on the first screen (not the plot in its closed <details>).
        page.wait_for_function("[...document.querySelectorAll('main img')]"
                               ".filter(i => i.checkVisibility() && "
                               "i.getBoundingClientRect().top < innerHeight)"
                               ".every(i => i.complete && i.naturalWidth > 0)")
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")

    page.goto(base + "/")
    page.screenshot(path=str(SCREENSHOTS / f"home-{size}.png"))
    page.goto(base + "/browse")
    shows_all_pictures()
    page.screenshot(path=str(SCREENSHOTS / f"browse-{size}.png"))

    page.fill("input[name=q]", "coffee.jpg")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/images/*")
    shows_all_pictures()
    first = page.locator("#neighbour-grid li.neighbour").first
    assert first.bounding_box()["y"] < SIZES[size]["height"]  # on the first screen
    # Its rescaled copy, a near-duplicate by the calibrated scale, comes first.
    assert first.locator(".name").inner_text() == "scan_0002.jpg"
    assert first.locator(".distance").inner_text() == "near-duplicate"
    page.screenshot(path=str(SCREENSHOTS / f"image-{size}.png"))

    page.goto(base + "/duplicates")
    shows_all_pictures()
    if size == "desktop":  # small groups share a row
        tops = page.eval_on_selector_all(
            "li.duplicate-group", "l => l.map(g => Math.round(g.getBoundingClientRect().top))")
        assert len(set(tops)) < len(tops)
    page.screenshot(path=str(SCREENSHOTS / f"duplicates-{size}.png"))

    # A phone photo of a print: the low-quality copy finds its original first.
    page.goto(base + "/search-by-image")
    page.set_input_files("#image-input", str(SAMPLES / "objects" / "coffee_low_quality.jpg"))
    page.wait_for_selector("#neighbour-grid li.neighbour", timeout=180_000)
    shows_all_pictures()
    names = page.eval_on_selector_all("#neighbour-grid .name", "l => l.map(n => n.textContent)")
    assert names[0] == "coffee_low_quality.jpg" and "coffee.jpg" in names[:4]
    page.screenshot(path=str(SCREENSHOTS / f"search-by-image-{size}.png"))
    assert errors == []
    context.close()
