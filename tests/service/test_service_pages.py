"""The archivists' HTML pages, rendered by the test client."""
from __future__ import annotations

import re

import pytest


from db.models import OK
from service import create_app
from db.engine import make_engine
from db.spaces import save_space
from service_support import SPECS, build_archive, settings_for_archive


def page(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code)
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    return html


def test_home_shows_counts_search_and_random(client):
    html = page(client, "/")
    assert "11 images in the archive" in html
    assert re.search(r"6 ok", html) and re.search(r"1 missing", html)
    assert 'action="/search"' in html and 'href="/random"' in html
    assert "completed" in html  # the last runs


def test_random_goes_to_an_image_with_status_ok(client):
    ok_ids = {i for i, spec in enumerate(SPECS, 1) if spec.status == OK}
    for _ in range(10):
        response = client.get("/random")
        assert response.status_code == 302
        assert int(response.headers["Location"].rsplit("/", 1)[-1]) in ok_ids


@pytest.mark.parametrize("query, target", [("3", "/images/3"), ("rose.jpg", "/images/1"),
                                           ("flowers/tulip.jpg", "/images/2"),
                                           ("straße", "/images/5"), ("tul", "/images/2")])
def test_search_with_one_match_opens_the_image(client, query, target):
    response = client.get("/search", query_string={"q": query})
    assert response.status_code == 302 and response.headers["Location"] == target


def test_search_with_several_matches_lists_them(client):
    html = page(client, "/search?q=duplicate.jpg")
    assert 'href="/images/3"' in html and 'href="/images/4"' in html
    assert "a/duplicate.jpg" in html and "b/duplicate.jpg" in html


@pytest.mark.parametrize("query", ["nothing-like-this", "999", "<script>alert(1)</script>"])
def test_search_without_matches_says_so(client, query):
    html = page(client, "/search?q=" + query, 404)
    assert "No image has this id, path or file name" in html
    assert "<script>alert" not in html  # the text is escaped


def test_image_page_shows_image_fingerprint_and_neighbours(client, archive):
    html = page(client, "/images/2")
    assert 'src="/images/2/thumbnail?size=512"' in html and 'href="/images/2/file"' in html
    assert 'src="/images/2/fingerprint.svg"' in html
    assert 'id="previous-link" rel="prev" href="/images/1"' in html
    assert 'id="next-link" rel="next" href="/images/3"' in html
    assert 'href="/api/v1/images/2"' in html
    # The improved space first (PAGE_SPACE), the original one a click away.
    assert grid(html) == [j for j, _ in archive.whitened[2]] != \
        [j for j, _ in archive.neighbours[2]]
    assert re.search(r'id="space-whitened" href="/images/2\?space=whitened"\s+title="[^"]*"'
                     r' aria-current="page"', html)
    html = page(client, "/images/2?space=pool3")
    assert grid(html) == [j for j, _ in archive.neighbours[2]]
    first_distance = archive.neighbours[2][0][1]
    # In words, the number on hover.
    assert re.search(rf'title="distance {first_distance:.4g} \(Original similarity\)">'
                     rf'(identical|near-duplicate|very similar|similar|less similar)</span>',
                     html)
    # Moving on, to a neighbour or the next image, keeps the space asked for.
    assert 'id="next-link" rel="next" href="/images/3?space=pool3"' in html
    assert re.findall(r'<a href="/images/\d+(\?space=pool3)?" title=', html) == \
        ["?space=pool3"] * len(archive.neighbours[2])


def grid(html: str) -> list[int]:
    """Return the ids in the page's neighbour grid, in order."""
    return [int(i) for i in re.findall(r'<li class="neighbour card[^>]*>\s*<a href="/images/'
                                       r'(\d+)', html)]


def test_the_page_falls_back_to_the_original_space_and_says_why(tmp_path):
    archive = build_archive(f"sqlite:///{tmp_path / 'images.sqlite3'}", tmp_path,
                            whitened=False)
    engine = make_engine(archive.url)
    save_space(engine, "whitened", note="learning it needs at least 200 images with "
                                        "features, the collection has 6")
    engine.dispose()
    client = create_app(settings_for_archive(archive, tmp_path / "thumbnails")).test_client()
    html = page(client, "/images/2")
    assert grid(html) == [j for j, _ in archive.neighbours[2]]
    assert "Improved similarity: not computed</span>" in html
    assert ": not computed (learning it needs at least 200" in html  # on hover
    html = page(client, "/images/2?space=whitened")
    assert 'id="neighbour-grid"' not in html
    assert "Improved similarity is not computed: learning it needs at least 200" in html
    page(client, "/images/2?space=other", 400)


@pytest.mark.parametrize("image_id, text", [
    (6, "No neighbours yet"), (7, "could not be read as an image"), (9, "not been processed yet")])
def test_image_page_explains_missing_neighbours(client, image_id, text):
    html = page(client, f"/images/{image_id}")
    assert text in html and 'id="neighbour-grid"' not in html


def test_unknown_image_page_is_a_clear_404(client):
    html = page(client, "/images/424242", 404)
    assert "There is no image with id 424242." in html and "<h1>Not found</h1>" in html


def test_first_and_last_images_have_one_pager_link(client):
    assert 'id="previous-link"' not in page(client, "/images/1")
    assert 'id="next-link"' not in page(client, f"/images/{len(SPECS)}")


def test_static_files_are_served(client):
    for name in ("style.css", "image.js"):
        assert client.get(f"/static/{name}").status_code == 200


def test_distance_words_follow_each_space_s_scale():
    from runtime import distances
    for space, scale in distances.SCALES.items():
        limits = [scale.identical, scale.near_duplicate, scale.very_similar, scale.similar]
        assert limits == sorted(limits) and len(set(limits)) == 4, space
        assert [distances.word(space, d) for d in limits + [scale.similar * 1.01]] == \
            ["identical", "near-duplicate", "very similar", "similar", "less similar"]
    # The same pair reads alike in both spaces although the numbers differ tenfold.
    assert distances.word("pool3", 8.5) == distances.word("whitened", 1.2) == "very similar"
    assert [distances.label(space) for space in ("pool3", "whitened", "augmented")] == \
        ["Original", "Improved", "Refined"]
    # A space without a scale yet: its own name, bare numbers, exact copies only.
    assert distances.label("some_new") == "Some new"
    assert distances.word("some_new", 0.5) is None
    assert distances.word("some_new", 3e-7) == "identical"
    assert distances.duplicate_distance("some_new", 8) == distances.UNKNOWN_IDENTICAL
    assert distances.duplicate_distance("pool3", 6.5) == 6.5


def test_the_duplicates_default_distance_is_each_space_s(client):
    from runtime import distances
    far = "start=1000000"  # no group shown: only the default is read
    assert client.get(f"/api/v1/duplicates?{far}").get_json()["max_distance"] == 8
    body = client.get(f"/api/v1/duplicates?space=whitened&{far}").get_json()
    assert body["max_distance"] == distances.SCALES["whitened"].near_duplicate
    html = page(client, f"/duplicates?space=whitened&{far}")
    options = re.findall(r'<option value="(\w+)"( selected)?>([^<]+)</option>', html)
    assert options == [("pool3", "", "Original"), ("whitened", " selected", "Improved")]


def test_the_home_page_starts_at_the_first_ok_image_and_links_the_failed(client):
    html = page(client, "/")
    first = min(i for i, spec in enumerate(SPECS, 1) if spec.status == OK)
    assert f'id="first-link" class="button" href="/images/{first}"' in html
    assert 'id="count-failed" class="count status-failed" href="/browse?status=failed"' in html


def test_a_failed_image_s_page_has_its_reason_and_no_picture_or_switch(client):
    html = page(client, "/images/7")
    assert "cannot identify image file" in html
    assert 'id="main-image"' not in html and "space-switch" not in html


def test_the_neighbour_filters(browse_client, browse_archive):
    html = page(browse_client, "/images/1")
    all_ids = grid(html)
    assert 'name="catalogued"' in html
    html = page(browse_client, "/images/1?catalogued=1")
    # The rows of the fixture's catalogue, and the one written by hand.
    paths = {"flowers/rose.jpg", "flowers/tulip.jpg", "Nachlass Müller/straße 1.jpg",
             "a/z.jpg"}
    records = {i for i, spec in enumerate(browse_archive.specs, 1) if spec.path in paths}
    assert grid(html) == [i for i in all_ids if i in records | {2 + len(SPECS)}]
    assert set(re.findall(r'data-catalogued="(\d)"', html)) == {"1"}
    html = page(browse_client, "/images/1?folder=series")
    assert grid(html) == [i for i in all_ids
                          if browse_archive.specs[i - 1].path.startswith("series/")]
