"""The title and record-id search (GET /api/v1/images/search, the search page) against a
brute force over the catalogue in Python, on SQLite and MariaDB: a fixed random corpus
of titles with non-ASCII letters, punctuation and mixed case, imported by the catalogue
job."""
from __future__ import annotations

import io
import random
import re
import unicodedata
from urllib.parse import quote

import pytest
from sqlalchemy import insert, text

from db.engine import make_engine, upgrade
from db.models import Image
from db.paths import text_hash as path_hash
from db.scratch import scratch_database
from database_support import mariadb_server_url
from jobs.catalogue.job import run as import_catalogue
from runtime.settings import load_settings
from service import create_app

IMAGES = 400
VOCABULARY = ["Munch", "Edvard", "Youth", "Straße", "Éléphant", "elephant", "Kunst-Halle",
              "Ölbild", "ölberg", "O'Neill", "Rosa", "rosengarten", "ROSE", "Café", "cafe",
              "Zürich", "1905", "19", "N°3", "Ångström", "İstanbul", "naïve", "ﬁsh", "Москва",
              "Мост", "東京", "東京タワー", "x_y", "ℌilbert", "and", "the", "a"]
PUNCTUATION = [" ", " ", " ", ", ", " (", ") ", " - ", ": ", "/", " & ", "'"]


def corpus() -> dict[int, tuple[str | None, str | None]]:
    """Return (external id, title) by image id: seeded, some without title or id."""
    rng = random.Random(25)
    records = {}
    for image_id in range(1, IMAGES + 1):
        if image_id % 17 == 0:
            continue  # no record
        words = rng.choices(VOCABULARY, k=rng.randint(1, 5))
        title = words[0] + "".join(rng.choice(PUNCTUATION) + w for w in words[1:])
        if image_id % 11 == 0:
            title = None
        external_id = (None if image_id % 13 == 0 else
                       rng.choice(["INV", "inv", "K", "Mü"]) + rng.choice("-/. ")
                       + str(image_id))
        if title is None and external_id is None:
            title = "Ohne Titel"
        records[image_id] = (external_id, title)
    return records


RECORDS = corpus()


# ---- the brute force: a regular expression over the folded text of each record ----

def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


def query_words(q: str) -> list[str]:
    return re.findall(r"[^\W_]+", fold(q))


def matches(q: str) -> set[int]:
    """Images where each query word starts right after a non-letter-digit (or at the
    start) of the folded title or record id."""
    found = set()
    for image_id, (external_id, title) in RECORDS.items():
        texts = [fold(t) for t in (external_id, title) if t]
        if all(any(re.search(r"(?<![^\W_])" + re.escape(w), t) for t in texts)
               for w in query_words(q)):
            found.add(image_id)
    return found


def expected_order(q: str) -> list[int]:
    driver = max(query_words(q), key=len)

    def key(image_id):
        external_id, title = RECORDS[image_id]
        text = " ".join(fold(t) for t in (external_id, title) if t)
        return min(w for w in re.findall(r"[^\W_]+", text) if w.startswith(driver)), image_id
    return sorted(matches(q), key=key)


def test_the_brute_force_finds_what_the_issue_asks_for():
    RECORDS_BEFORE = dict(RECORDS)
    try:
        RECORDS.clear()
        RECORDS.update({1: ("INV-7", "Youth (Edvard Munch)"), 2: (None, "Munchausen"),
                        3: ("K-5", "Ausmunchen")})
        assert matches("Munch") == {1, 2} and matches("munch edv") == {1}
        assert matches("inv-7") == {1} and matches("k 5") == {3}
    finally:
        RECORDS.clear()
        RECORDS.update(RECORDS_BEFORE)


# ---- the collection: image rows and the catalogue imported by the job ----

def _csv() -> str:
    def cell(value):
        return "" if value is None else '"' + value.replace('"', '""') + '"'
    lines = ["path,external_id,title"]
    lines += [f"{cell(f'f/{i:04d}.jpg')},{cell(e)},{cell(t)}" for i, (e, t) in RECORDS.items()]
    return "\n".join(lines) + "\n"


def _build(url: str, folder) -> None:
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(insert(Image), [
            {"id": i, "path": f"f/{i:04d}.jpg", "path_hash": path_hash(f"f/{i:04d}.jpg"),
             "file_name": f"{i:04d}.jpg", "status": "ok", "needs_grouping": False}
            for i in range(1, IMAGES + 1)])
    engine.dispose()
    csv_path = folder / "catalogue.csv"
    csv_path.write_text(_csv(), encoding="utf-8")
    settings = load_settings({"DATABASE_URL": url}, env={}, env_file=None)
    assert import_catalogue(settings, csv_path, out=io.StringIO())["new"] == len(RECORDS)


@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def search_client(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"titles-{request.param}")

    def serve(url):
        _build(url, folder)
        settings = load_settings({"DATABASE_URL": url, "IMAGE_ROOT": str(folder),
                                  "THUMBNAIL_CACHE": str(folder / "thumbs"),
                                  "SEARCH_PRELOAD": "0"},
                                 env={}, env_file=None)
        app = create_app(settings)
        return app, app.test_client()

    if request.param == "sqlite":
        app, client = serve(f"sqlite:///{folder / 'images.sqlite3'}")
        yield client
    else:
        with scratch_database(mariadb_server_url(), prefix="test_titles") as url:
            app, client = serve(url)
            yield client
            app.extensions["db_engine"].dispose()


def get_json(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code, response.data[:300])
    return response.get_json()


def walk(client, url) -> tuple[list[int], list]:
    """Follow `next` to the end; return the ids and the responses."""
    ids, responses = [], []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        ids += [image["id"] for image in body["images"]]
        responses.append(response)
        url = body["next"]
    return ids, responses


def sample_queries() -> list[str]:
    rng = random.Random(28)
    queries = ["Munch", "munch edvard", "STRASSE", "strasse", "Straße", "elephant",
               "ÉLÉPHANT", "ol", "Öl", "ölb", "o neill", "O'NEILL", "kunst halle", "halle",
               "cafe", "Café!", "zurich", "1905", "19", "n 3", "no3", "angstrom", "istanbul",
               "naive", "fish", "москва", "мо", "東京", "x", "y", "inv-1", "INV 12",
               "mü", "mu", "k/3", "ohne", "the a", "rose rosengarten", "zzz", "a"]
    for _ in range(30):
        word = rng.choice(VOCABULARY)
        queries.append(word[:rng.randint(1, len(word))].swapcase())
    return queries


def test_the_import_stores_the_words_of_every_record(search_client):
    engine = make_engine(search_client.application.config["SETTINGS"].database_url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT image_id, word FROM title_words")).all()
    engine.dispose()
    stored: dict[int, set[str]] = {}
    for image_id, word in rows:
        stored.setdefault(image_id, set()).add(word)
    assert stored == {image_id: set(re.findall(r"[^\W_]+", " ".join(
        fold(t) for t in record if t))) for image_id, record in RECORDS.items()}


def test_every_query_finds_what_the_brute_force_finds_in_its_order(search_client):
    checked = 0
    for q in sample_queries():
        if not query_words(q):
            continue
        ids, _ = walk(search_client, f"/api/v1/images/search?q={quote(q)}&limit=1000")
        assert ids == expected_order(q), q
        checked += bool(ids)
    assert checked > 30  # most queries find something


def test_the_issue_examples(search_client):
    munch = get_json(search_client, "/api/v1/images/search?q=Munch&limit=1000")
    assert munch["words"] == ["munch"] and munch["images"]
    assert all("munch" in fold(image["title"]) for image in munch["images"])
    lower = get_json(search_client, "/api/v1/images/search?q=" + quote("mü-5"))
    upper = get_json(search_client, "/api/v1/images/search?q=" + quote("MÜ-5"))
    assert lower["images"] == upper["images"]


@pytest.mark.parametrize("limit", [1, 7, 50])
def test_paging_forward_and_back_gives_every_result_once(search_client, limit):
    q = "a"  # common: many pages
    want = expected_order(q)
    assert len(want) > 3 * limit or limit == 50
    ids, responses = walk(search_client, f"/api/v1/images/search?q={q}&limit={limit}")
    assert ids == want
    for response in responses:
        body = response.get_json()
        links = response.headers.get("Link", "")
        for rel, name in (("next", "next"), ("prev", "previous")):
            if body[name]:
                assert f'<{body[name]}>; rel="{rel}"' in links
            else:
                assert f'rel="{rel}"' not in links
    back, url = [], responses[-1].get_json()["previous"]
    while url:
        body = get_json(search_client, url)
        back = [image["id"] for image in body["images"]] + back
        url = body["previous"]
    assert back == want[:len(back)] and len(back) == len(want) - len(
        responses[-1].get_json()["images"])


@pytest.mark.parametrize("query, status", [
    ("", 400), ("q=", 400), ("q=%20%21%3F", 400), ("q=a+b+c+d+e+f+g+h+i", 400),
    ("q=rose&limit=0", 400), ("q=rose&after=1&before=2", 400), ("q=rose&after=x", 400),
    ("q=zzz&after=1", 404), ("q=" + "x" * 5000, 400)])
def test_bad_searches_are_4xx_with_a_message(search_client, query, status):
    assert "error" in get_json(search_client, f"/api/v1/images/search?{query}", status)


def test_reimporting_changes_the_words(search_client, tmp_path):
    # The fixture's catalogue again with one title changed: found by the new word only.
    before = get_json(search_client, "/api/v1/images/search?q=ohne&limit=1000")
    assert before["images"]
    app = search_client.application
    url = app.config["SETTINGS"].database_url
    changed = dict(RECORDS)
    image_id = before["images"][0]["id"]
    changed[image_id] = (RECORDS[image_id][0], "Neuer Titel Qwertz")
    csv_path = tmp_path / "catalogue.csv"
    saved = dict(RECORDS)
    RECORDS.update(changed)
    try:
        csv_path.write_text(_csv(), encoding="utf-8")
        settings = load_settings({"DATABASE_URL": url}, env={}, env_file=None)
        assert import_catalogue(settings, csv_path, out=io.StringIO())["updated"] == 1
        found = get_json(search_client, "/api/v1/images/search?q=qwertz")
        assert [image["id"] for image in found["images"]] == [image_id]
        assert image_id not in [i["id"] for i in get_json(
            search_client, "/api/v1/images/search?q=ohne&limit=1000")["images"]]
    finally:
        RECORDS.clear()
        RECORDS.update(saved)
        csv_path.write_text(_csv(), encoding="utf-8")
        import_catalogue(settings, csv_path, out=io.StringIO())


def test_the_search_page_shows_what_its_json_link_answers(search_client):
    for q in ("munch", "a", "Éléphant"):
        page = search_client.get(f"/search?q={quote(q)}").get_data(as_text=True)
        shown = [int(i) for i in re.findall(r'<li class="neighbour card[^>]*>\s*<a href='
                                            r'"/images/(\d+)"',
                                            page.split("<h2>File names</h2>")[0])]
        json_url, = re.findall(r'<a href="([^"]+)">JSON \(titles', page)
        body = get_json(search_client, json_url.replace("&amp;", "&"))
        assert shown == [image["id"] for image in body["images"]] == expected_order(q)[:50]
        assert ('rel="next"' in page) == (body["next"] is not None)
