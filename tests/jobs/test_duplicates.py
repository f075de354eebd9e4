"""Near-duplicate groups, the hubs report and the pages of excluded images, on SQLite and
MariaDB, over the bundled sample images with their real features.

The groups are checked against an independent computation: the stored vector bytes
decoded with numpy, every pairwise distance in float64 and a breadth-first search over
the pairs within the distance (every pair, not only those in the stored lists).
"""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections import Counter, deque

import numpy as np
import pytest
from sqlalchemy import select

from db.engine import make_engine, upgrade
from db.models import Image, ImageFeatures, ImageNeighbour
from features_support import ROOT
from db import duplicates, hubs
from samples_support import EXCLUDED, MAX_DISTANCE, SAMPLES
from service import create_app
import oracle


def sources() -> dict[str, str]:
    """Return {path: source photo} from sample_images/SOURCES.md."""
    found = {}
    for line in (SAMPLES / "SOURCES.md").read_text().splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].endswith(".jpg"):
            found[cells[0]] = cells[1]
    return found


def stored(settings):
    """Return {id: path} and (ids, float64 vectors) decoded here from the stored bytes."""
    engine = make_engine(settings.database_url)
    with engine.connect() as connection:
        paths = dict(connection.execute(select(Image.id, Image.path)).all())
        rows = connection.execute(select(ImageFeatures.image_id, ImageFeatures.vector)
                                  .order_by(ImageFeatures.image_id)).all()
        in_lists = set(connection.execute(select(ImageNeighbour.image_id)).scalars()) | set(
            connection.execute(select(ImageNeighbour.neighbour_id)).scalars())
    engine.dispose()
    ids = np.array([r[0] for r in rows])
    vectors = np.stack([np.frombuffer(r[1], dtype="<f4") for r in rows]).astype(np.float64)
    return paths, ids, vectors, in_lists


def expected_groups(ids, vectors, within: float, leave_out=()) -> list[list[int]]:
    """Return the connected components of all pairs within `within`, by BFS."""
    keep = ~np.isin(ids, list(leave_out))
    ids, vectors = ids[keep], vectors[keep]
    distances = np.sqrt(oracle.squared_distances(vectors, vectors))
    seen, groups = set(), []
    for start in range(len(ids)):
        if start in seen:
            continue
        component, queue = [], deque([start])
        seen.add(start)
        while queue:
            node = queue.popleft()
            component.append(int(ids[node]))
            for other in np.flatnonzero(distances[node] <= within):
                if other != node and other not in seen:
                    seen.add(other)
                    queue.append(other)
        if len(component) > 1:
            groups.append(sorted(component))
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def excluded_id(paths) -> int:
    return next(i for i, p in paths.items() if p == EXCLUDED)


def test_groups_equal_an_independent_search_over_every_pair(samples):
    paths, ids, vectors, in_lists = stored(samples)
    engine = make_engine(samples.database_url)
    with engine.connect() as connection:
        for within in (MAX_DISTANCE, 3.0, 12.0):
            assert duplicates.find_groups(connection, "pool3", within) == expected_groups(
                ids, vectors, within, [excluded_id(paths)]), within
        groups = duplicates.describe(connection, duplicates.find_groups(
            connection, "pool3", MAX_DISTANCE), "pool3")
    engine.dispose()
    # The calibrated distance puts rescaled and recompressed copies with their photo and
    # never two different photos together.
    source = sources()
    by_path = [{m.path for m in group} for group in groups]
    for together in ({"objects/coffee.jpg", "objects/coffee_low_quality.jpg",
                      "imports/2024-03 Nachlass Müller/scan_0002.jpg"},
                     {"people/camera.jpg", "people/camera_small.jpg"},
                     {"objects/clock.jpg", "objects/clock_large.jpg"},
                     {"space/rocket.jpg", "space/rocket_small_q50.jpg"},
                     {"animals/chelsea.jpg", "animals/chelsea_thumbnail.jpg"}):
        assert any(together <= group for group in by_path), together
    assert all(len({source[p] for p in group}) == 1 for group in by_path)
    # Distances to each group's first image, from the vectors.
    row = {int(i): r for r, i in enumerate(ids)}
    for group in groups:
        first = vectors[row[group[0].image_id]]
        for member in group:
            assert member.distance == pytest.approx(
                np.linalg.norm(vectors[row[member.image_id]] - first), rel=1e-9, abs=1e-9)
    assert excluded_id(paths) not in in_lists


def test_report_duplicates_writes_the_groups_as_csv(samples, monkeypatch, tmp_path,
                                                     capsys):
    import report_duplicates
    monkeypatch.setenv("DATABASE_URL", samples.database_url)
    monkeypatch.setenv("DUPLICATE_DISTANCE", str(MAX_DISTANCE))
    paths, ids, vectors, _ = stored(samples)
    output = tmp_path / "groups.csv"
    assert report_duplicates.main(["--output", str(output)]) == 0
    with open(output, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["group", "image_id", "path", "external_id", "distance"]
    groups: dict[int, list[int]] = {}
    for entry in rows:
        groups.setdefault(int(entry["group"]), []).append(int(entry["image_id"]))
        assert entry["path"] == paths[int(entry["image_id"])] and entry["external_id"] == ""
    assert list(groups.values()) == expected_groups(ids, vectors, MAX_DISTANCE,
                                                    [excluded_id(paths)])
    assert all(float(e["distance"]) == 0 for e in rows
               if int(e["image_id"]) == groups[int(e["group"])][0])
    # --max-distance 0: only identical vectors, and the sample has none.
    assert report_duplicates.main(["--max-distance", "0"]) == 0
    assert capsys.readouterr().out.strip() == ",".join(report_duplicates.COLUMNS)
    with pytest.raises(SystemExit) as exit_:
        report_duplicates.main(["--max-distance", "-1"])
    assert exit_.value.code == 2


def test_the_duplicates_page_and_its_json_show_the_same_groups(samples):
    paths, ids, vectors, _ = stored(samples)
    expected = expected_groups(ids, vectors, MAX_DISTANCE, [excluded_id(paths)])
    client = create_app(samples).test_client()
    body = client.get("/api/v1/duplicates").get_json()
    assert body["max_distance"] == MAX_DISTANCE and body["groups_total"] == len(expected)
    assert [[m["id"] for m in g["images"]] for g in body["groups"]] == expected
    assert body["next"] is None and body["previous"] is None
    # Paged: one group a page, the next link leads on.
    first = client.get("/api/v1/duplicates?limit=1").get_json()
    assert [m["id"] for m in first["groups"][0]["images"]] == expected[0]
    second = client.get(first["next"]).get_json()
    assert second["groups"][0]["group"] == 2
    assert [m["id"] for m in second["groups"][0]["images"]] == expected[1]
    page = client.get("/duplicates?limit=1&start=1")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for image_id in expected[1]:
        assert f'/images/{image_id}/thumbnail?size=256' in html
    assert 'id="next-groups"' in html and 'id="previous-groups"' in html
    wider = client.get("/api/v1/duplicates?max_distance=12").get_json()
    assert [[m["id"] for m in g["images"]] for g in wider["groups"]] == expected_groups(
        ids, vectors, 12.0, [excluded_id(paths)])
    for bad in ("max_distance=-1", "max_distance=abc", "max_distance=nan", "limit=0",
                "start=x", "space=other"):
        response = client.get(f"/api/v1/duplicates?{bad}")
        assert response.status_code == 400 and "error" in response.get_json(), bad


def test_an_excluded_image_says_so_on_its_page_and_in_the_api(samples):
    paths, *_ = stored(samples)
    target = excluded_id(paths)
    other = next(i for i, p in paths.items() if p == "textures/brick.jpg")
    client = create_app(samples).test_client()
    assert client.get(f"/api/v1/images/{target}").get_json()["excluded"] is True
    assert client.get(f"/api/v1/images/{other}").get_json()["excluded"] is False
    html = client.get(f"/images/{target}").get_data(as_text=True)
    assert 'id="excluded"' in html and f"pattern {EXCLUDED}" in html
    assert 'id="excluded"' not in client.get(f"/images/{other}").get_data(as_text=True)
    response = client.get(f"/api/v1/images/{target}/neighbours")
    assert response.status_code == 404 and response.get_json()["excluded"] is True


def test_hubs_are_counted_as_the_lists_say(samples):
    engine = make_engine(samples.database_url)
    with engine.connect() as connection:
        occurrences = Counter(connection.execute(select(ImageNeighbour.neighbour_id).where(
            ImageNeighbour.space == 1)).scalars())
        lists = len(set(connection.execute(select(ImageNeighbour.image_id).where(
            ImageNeighbour.space == 1)).scalars()))
        paths = dict(connection.execute(select(Image.id, Image.path)).all())
        mean = sum(occurrences.values()) / lists
        for factor in (1.0, 1.5, 2.0):
            found, figures = hubs.find_hubs(connection, "pool3", factor)
            threshold = int(np.ceil(factor * mean))
            assert figures["threshold"] == threshold
            want = sorted(((n, i) for i, n in occurrences.items() if n >= threshold),
                          key=lambda pair: (-pair[0], pair[1]))
            assert [(h.lists, h.image_id) for h in found] == want
            assert all(h.path == paths[h.image_id] and h.share == h.lists / lists
                       for h in found)
    engine.dispose()


def test_report_hubs_prints_id_path_count_and_share(samples, monkeypatch, capsys):
    import report_hubs
    monkeypatch.setenv("DATABASE_URL", samples.database_url)
    assert report_hubs.main(["--factor", "1.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# pool3: ") and lines[1] == "id\tlists\tshare\tpath"
    rows = list(csv.reader(io.StringIO("\n".join(lines[2:])), delimiter="\t"))
    assert rows and all(float(share) == pytest.approx(int(n) / 26, abs=5e-4)
                        for _, n, share, _ in rows)


@pytest.mark.parametrize("script, header", [
    ("report_duplicates.py", "group,image_id,path,external_id,distance"),
    ("report_hubs.py", "id\tlists\tshare\tpath")])
def test_the_reports_run_as_commands(sqlite_url, script, header):
    # The real command lines, once each; the tests above call main(argv) in-process.
    engine = make_engine(sqlite_url)
    upgrade(engine)
    engine.dispose()
    result = subprocess.run([sys.executable, str(ROOT / script)], cwd=ROOT,
                            env={**os.environ, "DATABASE_URL": sqlite_url},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert header in result.stdout.splitlines()
