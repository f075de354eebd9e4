"""The database tests' fixtures."""
from __future__ import annotations

import pytest

from db.engine import make_engine, upgrade
from db.scratch import scratch_database


@pytest.fixture
def migrated_mariadb_url(mariadb_url):
    """Yield a second fresh MariaDB database, brought to head by the migrations."""
    with scratch_database(mariadb_url) as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
