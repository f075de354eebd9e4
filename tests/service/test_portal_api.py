"""The portal-friendly API: catalogue labels and IIIF links in every list of images,
on SQLite and MariaDB (the browse archive, which has a catalogue)."""
from __future__ import annotations

import pytest
from sqlalchemy import text

import db.duplicates
from db.engine import make_engine


def get_json(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code, response.data[:300])
    return response.get_json()


def catalogue_rows(url: str) -> dict[int, tuple]:
    """Return (external_id, title) by image id, read with plain SQL."""
    engine = make_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT image_id, external_id, title FROM catalogue_records")).all()
    engine.dispose()
    return {row[0]: (row[1], row[2]) for row in rows}


def test_neighbour_entries_carry_the_catalogue_fields(browse_client, browse_archive):
    records = catalogue_rows(browse_archive.url)
    labelled = 0
    for image_id, expected in browse_archive.neighbours.items():
        page = get_json(browse_client, f"/api/v1/images/{image_id}/neighbours?limit=100")
        assert [n["id"] for n in page["neighbours"]] == [j for j, _ in expected]
        for entry in page["neighbours"]:
            assert (entry["external_id"], entry["title"]) == \
                records.get(entry["id"], (None, None))
            assert entry["links"]["iiif"] == f"/iiif/3/{entry['id']}"
            labelled += entry["title"] is not None
    assert labelled  # the fixture's catalogue reaches some lists
    by_external = get_json(browse_client, "/api/v1/external/K-5/neighbours?limit=100")
    assert by_external == get_json(browse_client, "/api/v1/images/5/neighbours?limit=100")


def test_image_objects_and_duplicate_groups_carry_them_too(browse_client, browse_archive):
    assert get_json(browse_client, "/api/v1/images/5")["links"]["iiif"] == "/iiif/3/5"
    records = catalogue_rows(browse_archive.url)
    # The fixture stores no list ends, so no groups: the members' read is asked directly.
    group = sorted(set(browse_archive.vectors) & set(records)) + [1]
    engine = make_engine(browse_archive.url)
    with engine.connect() as connection:
        members, = db.duplicates.describe(connection, [group], "pool3")
    engine.dispose()
    assert [(m.image_id, m.external_id, m.title) for m in members] == \
        [(i, *records.get(i, (None, None))) for i in group]


def test_the_original_endpoint_keeps_its_exact_shape(browse_client, browse_archive):
    specs = browse_archive.specs
    for image_id, expected in browse_archive.neighbours.items():
        body = get_json(browse_client, f"/image_name_and_neighbours/{image_id}")
        assert body == [specs[image_id - 1].path.rsplit("/", 1)[-1],
                        [{"id": j, "distance": d} for j, d in expected]]


def _links(response) -> dict[str, str]:
    """Return the Link header's targets by relation (RFC 8288's simple form)."""
    found = {}
    for part in filter(None, response.headers.get("Link", "").split(", <")):
        target, rel = part.lstrip("<").split(">; rel=")
        found[rel.strip('"')] = target
    return found


@pytest.mark.parametrize("first, items, next_key, previous_key", [
    ("/api/v1/images?limit=4", "images", "next", "previous"),
    ("/api/v1/images/lookup?name=duplicate.jpg&limit=1", "images", "next", "previous"),
    ("/api/v1/images/5/neighbours?limit=3", "neighbours", "next", "previous"),
    ("/api/v1/images/5/neighbours?limit=4&space=pool3", "neighbours", "next", "previous"),
    ("/api/v1/browse?limit=5", "images", "next_url", "previous_url"),
    ("/api/v1/browse?order=path&limit=7", "images", "next_url", "previous_url"),
    ("/api/v1/images/search?q=ros&limit=1", "images", "next", "previous")])
def test_paging_links_lead_through_every_result_once_both_ways(
        browse_client, first, items, next_key, previous_key):
    def key(entry):
        return entry["id"]

    whole = get_json(browse_client, first.replace("limit=", "limit=100&x="))[items]
    forward, url, last = [], first, None
    while url:
        response = browse_client.get(url)
        assert response.status_code == 200
        body = response.get_json()
        assert _links(response) == {rel: body[name] for rel, name in
                                    (("next", next_key), ("prev", previous_key))
                                    if body[name]}
        forward += [key(entry) for entry in body[items]]
        url, last = body[next_key], body
    assert forward == [key(entry) for entry in whole] and len(whole) > 1
    backward, url = [key(entry) for entry in last[items]], last[previous_key]
    while url:
        body = get_json(browse_client, url)
        backward = [key(entry) for entry in body[items]] + backward
        url = body[previous_key]
    assert backward == forward
