"""The jobs tests' fixtures (the shared ones are in tests/conftest.py)."""
from __future__ import annotations

import os
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import insert

from db.engine import make_engine, upgrade
from db.models import MISSING, OK, SPACE_IDS, Image, ImageNeighbour, Space
from db.paths import text_hash as path_hash
from db.scratch import scratch_database
from database_support import KillableServer, mariadb_server_url as _mariadb_server_url
from features_support import ROOT, shared_extractor
from grouping_support import database
from iiif_server_support import IiifServer
from jobs.features.job import run as run_features
from jobs.grouping.run import run as run_grouping
from runtime.settings import load_settings
from samples_support import EXCLUDED, K, MAX_DISTANCE, SAMPLES, cluster_settings, snapshot


@pytest.fixture(scope="session")
def extractor():
    """The real extractor, one for the session (shared_extractor() caches it anyway)."""
    return shared_extractor()


# ---- test_catalogue_import ----

CATALOGUE_PATHS = ["flowers/rose.jpg", "flowers/tulip.jpg", "a/duplicate.jpg",
                   "b/duplicate.jpg", "Nachlass Müller/straße 1.jpg", "old/moved.jpg",
                   "new/moved.jpg"]
CATALOGUE_STATUS = {6: MISSING}  # moved.jpg: the old place is missing, the new one present


@pytest.fixture
def catalogue_db(database_url):
    """A database holding the images of CATALOGUE_PATHS (ids 1..), no records yet."""
    engine = make_engine(database_url)
    upgrade(engine)
    stamp = datetime(2026, 11, 1)
    with engine.begin() as connection:
        connection.execute(insert(Image), [
            {"id": i, "path": p, "path_hash": path_hash(p), "file_name": p.rsplit("/", 1)[1],
             "status": CATALOGUE_STATUS.get(i, OK), "needs_grouping": False,
             "created_at": stamp, "updated_at": stamp}
            for i, p in enumerate(CATALOGUE_PATHS, 1)])
    yield engine
    engine.dispose()


@pytest.fixture
def catalogue_settings(catalogue_db, settings_for):
    return settings_for(database_url=catalogue_db.url.render_as_string(hide_password=False))


# ---- test_cluster ----

@pytest.fixture(scope="module")
def dask_client():
    """A LocalCluster of 2 worker processes, one task at a time each."""
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """The feature job in-process on the sample images: (counts, tables)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('in-process') / 'images.sqlite3'}"
    settings = cluster_settings(url, tmp_path_factory.mktemp("in-process-cache"))
    counts = run_features(settings, quiet=True, extractor=shared_extractor())
    return counts, snapshot(url)


@pytest.fixture(params=["sqlite", "mariadb"])
def two_databases(request, tmp_path):
    """Two fresh empty databases of one kind."""
    if request.param == "sqlite":
        yield [f"sqlite:///{tmp_path / f'{name}.sqlite3'}" for name in "ab"]
        return
    server = os.environ.get("TEST_MARIADB_URL")
    if not server:
        if os.environ.get("REQUIRE_MARIADB") == "1":
            pytest.fail("TEST_MARIADB_URL is not set")
        pytest.skip("TEST_MARIADB_URL is not set; start a server with scripts/mariadb.sh")
    with scratch_database(server) as first, scratch_database(server) as second:
        yield [first, second]


# ---- test_duplicates ----

@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def samples(request, tmp_path_factory):
    """Yield the settings of a database holding the sample images, grouped with one of
    them excluded."""
    root = tmp_path_factory.mktemp(f"samples-{request.param}")

    def build(url):
        settings = load_settings({
            "DATABASE_URL": url, "IMAGE_ROOT": str(SAMPLES), "NEIGHBOURS_K": str(K),
            "THUMBNAIL_CACHE": str(root / "thumbnails"),
            "VECTOR_CACHE": str(root / "vector-cache"),
            "MODEL_CACHE": str(ROOT / "data" / "inception_v3_2015_12_05.weights.h5"),
            "EXCLUDE_PATTERNS": EXCLUDED, "DUPLICATE_DISTANCE": str(MAX_DISTANCE),
            "SEARCH_PRELOAD": "0"},
            env={}, env_file=None)
        run_features(settings, quiet=True, extractor=shared_extractor())
        run_grouping(settings, quiet=True)
        return settings

    if request.param == "sqlite":
        yield build(f"sqlite:///{root / 'images.sqlite3'}")
    else:
        with scratch_database(_mariadb_server_url(), prefix="test_duplicates") as url:
            yield build(url)


# ---- test_end_to_end ----

@pytest.fixture
def filled(database_url, settings_for):
    settings = settings_for(database_url=database_url, image_root=SAMPLES, neighbours_k=K)
    counts = run_features(settings, quiet=True, extractor=shared_extractor())
    grouped = run_grouping(settings, quiet=True)
    return settings, counts, grouped


# ---- test_evaluate ----

EVALUATION_PATHS = {1: "a/1.jpg", 2: "a/2.jpg", 3: "a/3.jpg", 4: "b/1.jpg", 5: "b/2.jpg",
                    6: "x.jpg", 7: "c/1.jpg"}
# Lists by hand: the original space ranks some strangers first, the other does not.
EVALUATION_LISTS = {
    "pool3": {1: [4, 2, 6, 3, 5], 2: [1, 3, 4], 3: [6, 5, 4, 1], 4: [5, 1],
              5: [1, 2, 6, 4], 7: [1]},
    "whitened": {1: [2, 3, 4], 2: [1, 3], 3: [1, 2], 4: [5], 5: [4], 7: [6]},
}


@pytest.fixture
def evaluation_collection(database_url):
    """A database of EVALUATION_PATHS with the neighbour lists of EVALUATION_LISTS."""
    engine = make_engine(database_url)
    upgrade(engine)
    when = datetime(2026, 11, 25)
    with engine.begin() as connection:
        connection.execute(insert(Image), [
            {"id": i, "path": p, "path_hash": path_hash(p), "file_name": p.split("/")[-1],
             "status": "ok", "needs_grouping": False, "created_at": when,
             "updated_at": when} for i, p in EVALUATION_PATHS.items()])
        connection.execute(insert(Space).values(id=SPACE_IDS["whitened"], name="whitened",
                                                dimensions=8, lists=6, updated_at=when))
        connection.execute(insert(ImageNeighbour), [
            {"image_id": i, "space": SPACE_IDS[space], "neighbour_id": n,
             "distance": rank / 10}
            for space, lists in EVALUATION_LISTS.items() for i, entries in lists.items()
            for rank, n in enumerate(entries, 1)])
    yield engine
    engine.dispose()


# ---- test_grouping and test_exclusions: (engine, settings) of a migrated database ----

@pytest.fixture
def grouping_db(database_url, settings_for):
    yield from database(database_url, settings_for)


@pytest.fixture
def grouping_sqlite_db(sqlite_url, settings_for):
    yield from database(sqlite_url, settings_for)


@pytest.fixture
def grouping_mariadb_db(mariadb_url, settings_for):
    """As grouping_db, on MariaDB only: the grouping job keeps no vector cache for
    SQLite."""
    yield from database(mariadb_url, settings_for)


# ---- test_features ----

@pytest.fixture
def job(settings_for, database_url, tmp_path, extractor):
    """Return run_job(**options) over tmp_path/images into the test's database."""
    root = tmp_path / "images"
    root.mkdir()

    def run_job(batch_size=2, **options):
        settings = settings_for(database_url=database_url, image_root=root,
                                batch_size=batch_size)
        return run_features(settings, quiet=True, extractor=extractor, **options)
    run_job.root = root
    run_job.url = database_url
    return run_job


# ---- test_jobs_dying_database ----

@pytest.fixture(scope="module")
def killable_server():
    """A private MariaDB server that the tests may kill; its control and its URL."""
    if not os.environ.get("TEST_MARIADB_URL"):
        pytest.skip("TEST_MARIADB_URL is not set; start a server with scripts/mariadb.sh")
    port = os.environ.get("TEST_MARIADB_KILL_PORT") or str(
        int(os.environ.get("TEST_MARIADB_PORT", "3307")) + 20)
    control = KillableServer(port, Path(f"/tmp/imagegroup-mariadb-killable-{port}"))
    control.start()
    yield control
    subprocess.run([str(ROOT / "scripts" / "mariadb.sh"), "stop"], env=control.env,
                   check=False, capture_output=True)


# ---- test_iiif_import ----

@pytest.fixture
def iiif_server():
    """A local IIIF server holding the sample images as img00, img01, ... (a level-0
    static layout); its `files` maps each image id to its sample file."""
    files = sorted(p for p in (ROOT / "sample_images").rglob("*") if p.suffix == ".jpg")
    with IiifServer() as server:
        server.files = {f"img{i:02d}": path for i, path in enumerate(files)}
        server.state.images.update({i: p.read_bytes() for i, p in server.files.items()})
        yield server
