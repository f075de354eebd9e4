"""Shared fixtures: a fresh database per test, on SQLite and on a real MariaDB server.

The MariaDB server is the one `scripts/mariadb.sh` starts; its URL (without a database
name) comes in TEST_MARIADB_URL. Without it the MariaDB tests are skipped, unless
REQUIRE_MARIADB=1 (set by scripts/test.sh and CI), where they fail instead.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# First of the project's packages: `db` loads the MariaDB driver before any test can
# import TensorFlow (see db/__init__.py).
from db.scratch import scratch_database  # noqa: E402
from runtime.settings import load_settings  # noqa: E402


def _mariadb_server_url() -> str:
    url = os.environ.get("TEST_MARIADB_URL")
    if not url:
        message = "TEST_MARIADB_URL is not set; start a server with scripts/mariadb.sh"
        if os.environ.get("REQUIRE_MARIADB") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return url


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
                  "VECTOR_CACHE": str(tmp_path / "vector-cache")}
        values.update({k.upper(): str(v) for k, v in overrides.items()})
        return load_settings(values, env={}, env_file=None)
    return build
