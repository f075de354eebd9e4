"""The jobs' engine turns every failure of a lost MariaDB connection into a database error."""
from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from db.engine import make_engine


def kill_session(url: str, session_id: int) -> None:
    killer = make_engine(url)
    with killer.connect() as connection:
        connection.execute(text(f"KILL CONNECTION {int(session_id)}"))
    killer.dispose()


def test_a_commit_on_a_killed_connection_is_a_database_error(mariadb_url):
    # The C extension's commit() raises its own MySQLInterfaceError here, no DB-API error.
    engine = make_engine(mariadb_url)
    with engine.connect() as connection:
        connection.execute(text("CREATE TABLE t (x INT)"))
        connection.commit()
        connection.execute(text("INSERT INTO t VALUES (1)"))
        kill_session(mariadb_url, connection.execute(text("SELECT CONNECTION_ID()")).scalar())
        with pytest.raises(OperationalError) as raised:
            connection.commit()
        assert raised.value.connection_invalidated
    with engine.connect() as connection:  # the pool gives a working connection again
        assert connection.execute(text("SELECT COUNT(*) FROM t")).scalar() == 0
    engine.dispose()

