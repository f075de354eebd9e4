"""The shared fixtures (test modules import helpers, never fixtures): a fresh database per
test on SQLite and on a real MariaDB server, the service's archive and app, the browser,
the grouping tests' small learned space, and scripts' main(argv) run in-process.

The MariaDB server is the one `scripts/mariadb.sh` starts; its URL (without a database
name) comes in TEST_MARIADB_URL. Without it the MariaDB tests are skipped, unless
REQUIRE_MARIADB=1 (set by scripts/test.sh and CI), where they fail instead.
"""
from __future__ import annotations

from pathlib import Path

import pytest

# First of the project's packages: `db` loads the MariaDB driver before any test can
# import TensorFlow (see db/__init__.py).
from db.scratch import scratch_database
from runtime.settings import load_settings
from browser_support import CHROMIUM_ARGS, _chromium
from database_support import mariadb_server_url as _mariadb_server_url
from service_support import build_archive, settings_for_archive

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def mariadb_url():
    """Yield the URL of a new, empty MariaDB database; drop it afterwards."""
    with scratch_database(_mariadb_server_url()) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'images.sqlite3'}"


@pytest.fixture(params=["sqlite", "mariadb"])
def database_url(request):
    """A fresh empty database, once on SQLite and once on MariaDB."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def settings_for(tmp_path):
    """Build Settings for a test, ignoring the developer's environment and .env."""
    def build(**overrides):
        values = {"MODEL_CACHE": str(ROOT / "data" / "inception_v3_2015_12_05.weights.h5"),
                  "THUMBNAIL_CACHE": str(tmp_path / "thumbnails"),
                  "SEARCH_CACHE": str(tmp_path / "search-cache"),
                  "VECTOR_CACHE": str(tmp_path / "vector-cache"), "SEARCH_PRELOAD": "0"}
        values.update({k.upper(): str(v) for k, v in overrides.items()})
        return load_settings(values, env={}, env_file=None)
    return build


@pytest.fixture
def few_to_learn(monkeypatch):
    """Learn the whitened space from a handful of images, as from hundreds."""
    from numerics import whitening
    monkeypatch.setattr(whitening, "MIN_IMAGES", 4)


@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def archive(request, tmp_path_factory):
    """The fixture archive, once on SQLite and once on MariaDB, per test module."""
    root = tmp_path_factory.mktemp(f"archive-{request.param}")
    if request.param == "sqlite":
        yield build_archive(f"sqlite:///{root / 'images.sqlite3'}", root)
    else:
        with scratch_database(_mariadb_server_url(), prefix="test_service") as url:
            yield build_archive(url, root)


@pytest.fixture(scope="module")
def sqlite_archive(tmp_path_factory):
    """The fixture archive on SQLite only (fuzzing, browser, read-only proofs)."""
    root = tmp_path_factory.mktemp("archive-sqlite")
    return build_archive(f"sqlite:///{root / 'images.sqlite3'}", root)


@pytest.fixture(scope="module")
def app(archive, tmp_path_factory):
    """The service over the fixture archive."""
    from service import create_app
    application = create_app(settings_for_archive(archive,
                                                  tmp_path_factory.mktemp("thumbnails")))
    yield application
    application.extensions["db_engine"].dispose()


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    executable = _chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def run_main(monkeypatch, capsys):
    """Run a script's main(argv) in this process as its command line would run it: the
    settings from `env` (and the project's .env, as for a real run) only; return its exit
    status, stdout and stderr. One subprocess test per script proves the real command."""
    import importlib
    import logging
    import subprocess

    from runtime.settings import DEFAULTS

    def run(script: str, *args, env: dict | None = None, cwd=None, **settings):
        for name in DEFAULTS:
            monkeypatch.delenv(name, raising=False)
        for name, value in {**(env or {}),
                            **{k.upper(): str(v) for k, v in settings.items()}}.items():
            monkeypatch.setenv(name, str(value))
        if cwd is not None:
            monkeypatch.chdir(cwd)
        main = importlib.import_module(script.removesuffix(".py")).main
        # setup_logging changes these levels; the next test must not inherit them.
        levels = {name: logging.getLogger(name).level
                  for name in (None, "alembic", "mysql.connector")}
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit:  # argparse's usage errors
            code = exit.code
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess([script, *args], code, out, err)
    return run
