"""The gallery and the catalogue search in a real headless Chromium, served by gunicorn."""
from __future__ import annotations

import pytest

from browser_support import ARTIFACTS, GALLERY_FOLDER as FOLDER, \
    GALLERY_SPECS as BROWSE_SPECS

pytestmark = pytest.mark.browser


def gallery(page) -> list[str]:
    return page.eval_on_selector_all("#gallery a", "links => links.map(a => a.href)")


def test_browse_a_folder_and_page_forward_and_back(gallery_server, browser):
    base, _ = gallery_server
    ARTIFACTS.mkdir(exist_ok=True)
    in_folder = sorted((i for i, s in enumerate(BROWSE_SPECS, 1)
                        if s.path.startswith(FOLDER + "/")),
                       key=lambda i: BROWSE_SPECS[i - 1].path.encode())
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(base + "/")
    page.click("#browse-link")
    page.wait_for_url(base + "/browse")
    page.click("#subfolders a:text-is('Nachlass Müller/')")
    page.click("#subfolders a:text-is('Kasten 1/')")
    assert [a.strip() for a in page.inner_text(".breadcrumbs").split("/")] == \
        ["All images", "Nachlass Müller", "Kasten 1"]
    assert page.eval_on_selector_all("#subfolders a", "l => l.map(a => a.textContent)") == \
        ["Unterordner/"]
    # Three at a time, by the URL's limit, from the folder page's own link.
    page.goto(page.url + "&limit=3")
    first = gallery(page)
    assert first == [f"{base}/images/{i}" for i in in_folder[:3]]
    page.wait_for_function("[...document.querySelectorAll('#gallery img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(ARTIFACTS / "browse-folder.png"), full_page=True)
    seen = [first]
    while page.locator("#next-page").count():
        page.click("#next-page")
        seen.append(gallery(page))
    assert sum(seen, []) == [f"{base}/images/{i}" for i in in_folder]
    back = []
    while page.locator("#previous-page").count():
        page.click("#previous-page")
        back.append(gallery(page))
    assert back == seen[-2::-1]
    page.click("#gallery a >> nth=0")
    page.wait_for_url(f"{base}/images/{in_folder[0]}")
    assert errors == []
    page.close()


def test_open_an_image_from_the_catalogue_search(gallery_server, browser):
    base, _ = gallery_server
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(base + "/")
    page.fill("input[name=q]", "brief an")
    page.press("input[name=q]", "Enter")
    image_id = next(i for i, s in enumerate(BROWSE_SPECS, 1) if s.path.endswith("Blatt 03.jpg"))
    page.wait_for_url(f"{base}/images/{image_id}")
    assert "Brief an die Schwester" in page.inner_text("h1")
    assert page.get_attribute("#external-id a", "href") == "https://catalogue.example/NM-1-3"
    page.fill("input[name=q]", "NM-1-3")
    page.press("input[name=q]", "Enter")
    page.wait_for_url(f"{base}/images/{image_id}")
    page.screenshot(path=str(ARTIFACTS / "image-catalogue.png"), full_page=True)
    page.close()
