"""The gallery (browse) and the catalogue in the service, on SQLite and on MariaDB.

Pages are walked forward and back by their links and compared with an independent
Python sort of the fixture's paths; the folder tree with the folders computed from
the paths; the catalogue fields and look-ups with the records imported from a CSV.
"""
from __future__ import annotations

from urllib.parse import quote

import pytest

from db.models import FAILED, KEY_BYTES, OK
from service_support import BROWSE_SPECS, DEEP, LONG, SPECS

PATHS = [spec.path for spec in BROWSE_SPECS]
STATUSES = [spec.status for spec in BROWSE_SPECS]


def get_json(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code, response.data[:300])
    return response.get_json()


def expected_ids(order: str, folder: str = "", status: str | None = None) -> list[int]:
    """The ids in order, by Python's own sort of the paths' bytes (ties past KEY_BYTES
    by id)."""
    ids = [i for i, path in enumerate(PATHS, 1)
           if (not folder or path.startswith(folder + "/"))
           and (status is None or STATUSES[i - 1] == status)]
    if order == "path":
        ids.sort(key=lambda i: (PATHS[i - 1].encode()[:KEY_BYTES], i))
    return ids


def walk(client, url):
    """Return the pages met following next_url, then those following previous_url back."""
    forward = []
    while url:
        page = get_json(client, url)
        forward.append([image["id"] for image in page["images"]])
        last, url = url, page["next_url"]
    backward, url = [], get_json(client, last)["previous_url"]
    while url:
        page = get_json(client, url)
        backward.append([image["id"] for image in page["images"]])
        url = page["previous_url"]
    return forward, backward


def test_the_long_paths_sort_past_the_key_as_documented():
    deep = [i for i, p in enumerate(PATHS, 1) if p.startswith(DEEP)]
    assert len(DEEP.encode()) > KEY_BYTES and len(deep) == 2
    assert expected_ids("path", DEEP) == deep  # zweite (lower id) before erste


# Within a folder, path order only (test_id_order_within_a_folder_is_refused).
@pytest.mark.parametrize("order, folder, status", [
    ("id", "", None), ("id", "", OK), ("path", "", None), ("path", "", OK),
    ("path", "a", None), ("path", "Nachlass Müller", None), ("path", LONG, None),
    ("path", "series", OK), ("path", DEEP, None), ("path", "flowers", FAILED),
    ("path", "nowhere", None)])
def test_pages_forward_and_back_follow_the_python_sort(browse_client, order, folder,
                                                       status):
    expected = expected_ids(order, folder, status)
    query = f"order={order}&limit=3&folder={quote(folder)}" + \
        (f"&status={status}" if status else "")
    forward, backward = walk(browse_client, f"/api/v1/browse?{query}")
    assert sum(forward, []) == expected
    assert all(len(page) == 3 for page in forward[:-1])
    assert backward == forward[-2::-1]  # the same pages, back to the first


def test_a_page_in_the_middle_and_the_json_fields(browse_client):
    ids = expected_ids("path")
    page = get_json(browse_client, f"/api/v1/browse?order=path&limit=4&after={ids[5]}")
    assert [image["id"] for image in page["images"]] == ids[6:10]
    assert page["next"] == ids[9] and page["previous"] == ids[6]
    assert page["previous_url"] == f"/api/v1/browse?order=path&limit=4&before={ids[6]}"
    back = get_json(browse_client, page["previous_url"])
    assert [image["id"] for image in back["images"]] == ids[2:6]
    first = get_json(browse_client, f"/api/v1/browse?order=path&limit=4&before={ids[2]}")
    assert [image["id"] for image in first["images"]] == ids[:4]  # the start, full
    assert first["previous"] is None and first["previous_url"] is None


def expected_subfolders(folder: str) -> list[str]:
    prefix = folder + "/" if folder else ""
    names = {path[len(prefix):].split("/", 1)[0] for path in PATHS
             if path.startswith(prefix) and "/" in path[len(prefix):]}
    return sorted(names, key=str.encode)


@pytest.mark.parametrize("folder", ["", "a", "a/inner", "Nachlass Müller", LONG,
                                    "series", "a/inner/deeper", "nowhere"])
def test_the_folder_tree_one_level_at_a_time(browse_client, folder):
    page = get_json(browse_client, f"/api/v1/browse?folder={quote(folder)}&limit=1")
    assert [s["name"] for s in page["subfolders"]] == expected_subfolders(folder)
    assert page["more_subfolders"] is False
    for sub in page["subfolders"]:
        assert sub["folder"] == f"{folder}/{sub['name']}".lstrip("/")


def test_a_folder_of_many_subfolders_says_there_are_more(browse_archive):
    from db import browse
    from db.engine import make_engine
    engine = make_engine(browse_archive.url)
    with engine.connect() as connection:
        names, more = browse.subfolders(connection, "", limit=3)
    engine.dispose()
    assert more and names == sorted(expected_subfolders("")[:3], key=str.encode)


def test_id_order_within_a_folder_is_refused(browse_client):
    page = get_json(browse_client, "/api/v1/browse?folder=a&order=id", 400)
    assert "path order only" in page["error"]
    assert get_json(browse_client, "/api/v1/browse?folder=a")["order"] == "path"
    assert browse_client.get("/browse?folder=a&order=id").status_code == 400
    gallery = browse_client.get("/browse?folder=a").get_data(as_text=True)
    assert '<option value="id"' not in gallery and '<option value="path"' in gallery


ALL_FOLDERS = sorted({""} | {path.rsplit("/", k)[0] for path in PATHS
                             for k in range(1, path.count("/") + 1)})


@pytest.mark.parametrize("batch", [None, 1, 2, 3, 1000])  # None: growing batches
def test_subfolders_in_batches_match_the_paths(browse_archive, batch):
    # Batches end anywhere: inside a subtree, on a folder of its own, before a sibling
    # that sorts between a folder and its subfolders ("a b", "a-b" between "a" and "a/").
    from db import browse
    from db.engine import make_engine
    engine = make_engine(browse_archive.url)
    with engine.connect() as connection:
        listed = {folder: browse.subfolders(connection, folder, batch=batch)
                  for folder in ALL_FOLDERS + ["nowhere", "a/inn"]}
    engine.dispose()
    assert len(ALL_FOLDERS) > 20
    for folder, (names, more) in listed.items():
        assert (names, more) == (expected_subfolders(folder), False), folder


@pytest.mark.parametrize("query", [
    "order=size", "status=done", "after=abc", "after=0", "before=-1",
    "after=1&before=2", "limit=0", "limit=501", "folder=a//b", "folder=" + "x" * 5000])
def test_bad_browse_parameters_are_400_with_a_message(browse_client, query):
    assert "error" in get_json(browse_client, f"/api/v1/browse?{query}", 400)
    response = browse_client.get(f"/browse?{query}")
    assert response.status_code == 400 and b"Bad request" in response.data


def test_paging_from_an_unknown_image(browse_client):
    tail = get_json(browse_client, f"/api/v1/browse?after={len(PATHS)}")
    assert tail["images"] == [] and tail["previous"] is None
    assert tail["previous_url"] is None and tail["next_url"] is None
    assert "error" in get_json(browse_client, "/api/v1/browse?order=path&after=999999",
                               404)


def test_image_json_carries_the_catalogue_fields(browse_client):
    rose = get_json(browse_client, "/api/v1/images/1")
    assert (rose["external_id"], rose["title"], rose["url"]) == \
        ("K-1", "Rosa canina", "https://catalogue.example/K-1")
    plain = get_json(browse_client, "/api/v1/images/3")
    assert (plain["external_id"], plain["title"], plain["url"]) == (None, None, None)
    listed = get_json(browse_client, "/api/v1/images?limit=2")["images"]
    assert [image["title"] for image in listed] == ["Rosa canina", "<b>Tulipa</b> & Co"]


def test_lookup_and_neighbours_by_external_id(browse_client):
    found = get_json(browse_client, "/api/v1/images/lookup?external_id=" + quote("K/2 ü"))
    assert [image["id"] for image in found["images"]] == [2]
    assert get_json(browse_client,
                    "/api/v1/images/lookup?external_id=K-404")["images"] == []
    by_id = get_json(browse_client, "/api/v1/images/5/neighbours?limit=3")
    by_external = get_json(browse_client, "/api/v1/external/K-5/neighbours?limit=3")
    assert by_external == by_id and len(by_id["neighbours"]) == 3
    slash = get_json(browse_client, "/api/v1/external/" + quote("K/2 ü") + "/neighbours")
    assert slash["id"] == 2
    assert "error" in get_json(browse_client, "/api/v1/external/K-404/neighbours", 404)
    assert "error" in get_json(browse_client,
                               "/api/v1/images/lookup?external_id=K-1&name=x", 400)


def test_image_page_shows_the_record_and_links_only_web_addresses(browse_client):
    page = browse_client.get("/images/2").get_data(as_text=True)
    assert "&lt;b&gt;Tulipa&lt;/b&gt; &amp; Co" in page and "<b>Tulipa" not in page
    assert 'href="http://catalogue.example/K-2"' in page
    scripted = browse_client.get(f"/images/{2 + len(SPECS)}").get_data(as_text=True)
    assert "javascript:alert(1)" in scripted  # shown as text
    assert 'href="javascript:' not in scripted
    rose = browse_client.get("/images/1").get_data(as_text=True)
    assert "Signatur" in rose and "R 1" in rose


def test_search_finds_titles_and_external_ids(browse_client):
    response = browse_client.get("/search?q=K-5")
    assert response.status_code == 302 and response.location.endswith("/images/5")
    response = browse_client.get("/search?q=" + quote("K/2 ü"))
    assert response.location.endswith("/images/2")
    response = browse_client.get("/search?q=rosa")  # case does not matter
    assert response.status_code == 302 and response.location.endswith("/images/1")
    both = browse_client.get("/search?q=ROS")  # Rosa canina and Rosengarten (and rose.jpg)
    assert both.status_code == 200
    text = both.get_data(as_text=True)
    assert "Rosa canina" in text and "Rosengarten" in text


def test_gallery_page_lists_thumbnails_folders_and_pager(browse_client):
    page = browse_client.get("/browse?folder=a&order=path&limit=2").get_data(as_text=True)
    assert 'href="/browse?folder=a%2Finner&amp;limit=2"' in page  # path order: the default
    ids = expected_ids("path", "a")
    assert f'href="/images/{ids[0]}"' in page and f'href="/images/{ids[2]}"' not in page
    assert f'after={ids[1]}' in page and 'id="previous-page"' not in page
