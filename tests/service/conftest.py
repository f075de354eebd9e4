"""The service tests' fixtures (the archive, app and client most use are in
tests/conftest.py)."""
from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import schemathesis
from sqlalchemy import insert

from browser_support import BROWSER_SPECS, GALLERY_FOLDER, GALLERY_SPECS, gunicorn
from database_support import mariadb_server_url as _mariadb_server_url
from db.engine import make_engine, make_sessionmaker
from db.models import OK, CatalogueRecord, Image, ImageFeatures
from db.paths import text_hash as path_hash
from db.scratch import scratch_database
from features_support import MODEL_CACHE, ROOT, shared_extractor
from iiif_server_support import IiifServer, manifest_v3
from jobs.features.job import run as run_features
from jobs.grouping.run import run as run_grouping
from numerics.vectors import DIMENSIONS, MODEL_NAME, encode_vector
from runtime.settings import load_settings
from samples_support import SAMPLES
from service import create_app
from service_support import BROWSE_SPECS, SPECS, build_archive, settings_for_archive


# ---- test_browse: its own archive and client, in place of tests/conftest.py's ----

BROWSE_CATALOGUE = (
    "path,external_id,title,url,Signatur\n"
    "flowers/rose.jpg,K-1,Rosa canina,https://catalogue.example/K-1,R 1\n"
    "flowers/tulip.jpg,K/2 ü,<b>Tulipa</b> & Co,http://catalogue.example/K-2,\n"
    "Nachlass Müller/straße 1.jpg,K-5,Straße im Regen,,\n"
    "a/z.jpg,K-Z,Rosengarten,,\n")


@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def browse_archive(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"browse-{request.param}")
    if request.param == "sqlite":
        yield _with_catalogue(build_archive(f"sqlite:///{root / 'images.sqlite3'}", root,
                                            BROWSE_SPECS, whitened=False), root)
    else:
        with scratch_database(_mariadb_server_url(), prefix="test_browse") as url:
            yield _with_catalogue(build_archive(url, root, BROWSE_SPECS, whitened=False),
                                  root)


def _with_catalogue(archive, root):
    from jobs.catalogue.job import run
    csv_path = root / "catalogue.csv"
    csv_path.write_text(BROWSE_CATALOGUE, encoding="utf-8")
    settings = load_settings({"DATABASE_URL": archive.url}, env={}, env_file=None)
    assert run(settings, csv_path, out=io.StringIO())["new"] == 4
    # A record written past the import (by hand, say): its URL is no web address.
    engine = make_engine(archive.url)
    with engine.begin() as connection:
        connection.execute(insert(CatalogueRecord).values(
            image_id=2 + len(SPECS), external_id="K-JS", title="Script",
            url="javascript:alert(1)", excluded=False, updated_at=datetime(2026, 1, 1)))
    engine.dispose()
    return archive


@pytest.fixture(scope="module")
def browse_client(browse_archive, tmp_path_factory):
    app = create_app(settings_for_archive(browse_archive,
                                          tmp_path_factory.mktemp("thumbs")))
    yield app.test_client()
    app.extensions["db_engine"].dispose()


# ---- the browser tests: gunicorn over an archive, one per module ----

@pytest.fixture(scope="module")
def pages_server(tmp_path_factory):
    """Yield (base URL, archive) of gunicorn serving a fixture archive on loopback."""
    root = tmp_path_factory.mktemp("browser")
    archive = build_archive(f"sqlite:///{root / 'images.sqlite3'}", root, BROWSER_SPECS)
    with gunicorn({"DATABASE_URL": archive.url, "IMAGE_ROOT": str(archive.image_root),
                   "THUMBNAIL_CACHE": str(root / "thumbnails"), "LOG_LEVEL": "WARNING",
                   "SEARCH_CACHE": str(root / "search-cache"), "SEARCH_PRELOAD": "1"}) as base:
        yield base, archive


GALLERY_CATALOGUE = ("path,external_id,title,url\n"
                     f"{GALLERY_FOLDER}/Blatt 03.jpg,NM-1-3,Brief an die Schwester,"
                     "https://catalogue.example/NM-1-3\n")


@pytest.fixture(scope="module")
def gallery_server(tmp_path_factory):
    """As pages_server, over GALLERY_SPECS with one catalogue record."""
    root = tmp_path_factory.mktemp("browser-browse")
    archive = build_archive(f"sqlite:///{root / 'images.sqlite3'}", root, GALLERY_SPECS)
    from jobs.catalogue.job import run
    (root / "catalogue.csv").write_text(GALLERY_CATALOGUE, encoding="utf-8")
    run(load_settings({"DATABASE_URL": archive.url}, env={}, env_file=None),
        root / "catalogue.csv", out=io.StringIO())
    with gunicorn({"DATABASE_URL": archive.url, "IMAGE_ROOT": str(archive.image_root),
                   "THUMBNAIL_CACHE": str(root / "thumbnails"),
                   "LOG_LEVEL": "WARNING", "SEARCH_PRELOAD": "0"}) as base:
        yield base, archive


@pytest.fixture(scope="module")
def duplicates_server(tmp_path_factory):
    """Yield the base URL of gunicorn over the sample images, grouped, gravel excluded."""
    root = tmp_path_factory.mktemp("browser-duplicates")
    env = {"DATABASE_URL": f"sqlite:///{root / 'images.sqlite3'}",
           "IMAGE_ROOT": str(SAMPLES), "NEIGHBOURS_K": "10",
           "THUMBNAIL_CACHE": str(root / "thumbnails"), "LOG_LEVEL": "WARNING",
           "EXCLUDE_PATTERNS": "gravel.jpg", "DUPLICATE_DISTANCE": "8",
           "SEARCH_PRELOAD": "0"}
    settings = load_settings({**env, "MODEL_CACHE": str(
        ROOT / "data" / "inception_v3_2015_12_05.weights.h5")}, env={}, env_file=None)
    run_features(settings, quiet=True, extractor=shared_extractor())
    run_grouping(settings, quiet=True)
    with gunicorn(env) as base:
        yield base


# ---- test_service_app ----

@pytest.fixture
def mariadb_app(archive, tmp_path):
    """A fresh app (an empty pool) over the MariaDB archive."""
    if not archive.url.startswith("mysql"):
        pytest.skip("MariaDB only")
    application = create_app(settings_for_archive(archive, tmp_path))
    yield application
    application.extensions["db_engine"].dispose()


# ---- test_service_fuzz ----

@pytest.fixture(scope="module")
def api_schema(archive, tmp_path_factory):
    """The OpenAPI document as served, over the fixture archive on SQLite and MariaDB."""
    app = create_app(settings_for_archive(archive, tmp_path_factory.mktemp("thumbs")))
    yield schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    app.extensions["db_engine"].dispose()


# ---- test_service_search ----

SEEDED = 200  # seeded vectors beside the samples: enough to learn the whitened space


def _search_settings(url: str, folder: Path, **overrides):
    values = {"DATABASE_URL": url, "IMAGE_ROOT": str(SAMPLES), "MODEL_CACHE": str(MODEL_CACHE),
              "THUMBNAIL_CACHE": str(folder / "thumbnails"),
              "VECTOR_CACHE": str(folder / "vector-cache"),
              "SEARCH_CACHE": str(folder / "search-cache"), "NEIGHBOURS_K": "10",
              "SEARCH_PRELOAD": "0"}
    values.update({k.upper(): str(v) for k, v in overrides.items()})
    return load_settings(values, env={}, env_file=None)


def _add_seeded_vectors(url: str) -> None:
    """Add image rows with seeded vectors (no files: the service only searches them)."""
    rng = np.random.default_rng(14)
    engine = make_engine(url)
    now = datetime(2026, 11, 2, 12)
    with make_sessionmaker(engine).begin() as session:
        for number in range(SEEDED):
            path = f"seeded/{number:03d}.jpg"
            row = Image(path=path, path_hash=path_hash(path), file_name=f"{number:03d}.jpg",
                        status=OK, needs_grouping=True, created_at=now, updated_at=now)
            session.add(row)
            session.flush()
            vector = np.abs(rng.normal(0.0, 0.4, DIMENSIONS)).astype(np.float32)
            session.add(ImageFeatures(image_id=row.id, model=MODEL_NAME,
                                      vector=encode_vector(vector), created_at=now))
    engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def search_collection(request, tmp_path_factory):
    """(settings, app) over the sample images and the seeded vectors, grouped."""
    folder = tmp_path_factory.mktemp(f"search-{request.param}")

    def build(url):
        settings = _search_settings(url, folder)
        run_features(settings, quiet=True, extractor=shared_extractor())
        _add_seeded_vectors(url)
        run_grouping(settings, quiet=True)
        app = create_app(settings)
        return settings, app

    if request.param == "sqlite":
        settings, app = build(f"sqlite:///{folder / 'images.sqlite3'}")
        yield settings, app
    else:
        with scratch_database(_mariadb_server_url(), prefix="test_search") as url:
            settings, app = build(url)
            yield settings, app
            app.extensions["db_engine"].dispose()


# ---- test_service_iiif ----

@pytest.fixture
def iiif_app(database_url, settings_for, tmp_path):
    """The service over a database holding two IIIF images of a local IIIF server (the
    sample chelsea.jpg and astronaut.jpg), imported and not yet fetched: (client, server)."""
    from jobs.iiif_import.job import run as run_import
    samples = ROOT / "sample_images"
    with IiifServer() as server:
        for name, path in (("cat", "animals/chelsea.jpg"), ("man", "people/astronaut.jpg")):
            server.state.images[name] = (samples / path).read_bytes()
        top = server.publish("/manifests/m.json", manifest_v3(
            server, "m", [("c1", "cat"), ("c2", "man")]))
        empty = tmp_path / "files"
        empty.mkdir()
        settings = settings_for(database_url=database_url, image_root=empty)
        run_import(settings, top)
        application = create_app(settings)
        yield application.test_client(), server
        application.extensions["db_engine"].dispose()


# ---- test_iiif_image: gunicorn over an archive with the validator's test image ----

@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def iiif_server(request, tmp_path_factory):
    """Yield (base URL, id of the validator's image) of gunicorn with CORS_ORIGINS=*."""
    from iiif_support import VALIDATOR_PATH, add_image, validator_grid
    root = tmp_path_factory.mktemp(f"iiif-{request.param}")

    def serve(url):
        archive = build_archive(url, root, whitened=False)
        image_id = add_image(url, archive.image_root, VALIDATOR_PATH, validator_grid())
        with gunicorn({"DATABASE_URL": url, "IMAGE_ROOT": str(archive.image_root),
                       "THUMBNAIL_CACHE": str(root / "thumbnails"), "CORS_ORIGINS": "*",
                       "LOG_LEVEL": "WARNING"}) as base:
            yield base, image_id

    if request.param == "sqlite":
        yield from serve(f"sqlite:///{root / 'images.sqlite3'}")
    else:
        with scratch_database(_mariadb_server_url(), prefix="test_iiif") as url:
            yield from serve(url)
