"""The MariaDB test server for tests that make their own databases (conftest.py's fixtures
and the module-wide collections)."""
from __future__ import annotations

import os

import pytest


def mariadb_server_url() -> str:
    url = os.environ.get("TEST_MARIADB_URL")
    if not url:
        message = "TEST_MARIADB_URL is not set; start a server with scripts/mariadb.sh"
        if os.environ.get("REQUIRE_MARIADB") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return url
