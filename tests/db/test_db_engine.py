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



def test_a_connection_lost_after_its_commit_is_replaced_without_an_error_logged(
        mariadb_url, caplog):
    # The server gone between a commit and the connection's return: the pool's rollback
    # fails. A job must then still fail (or go on) in its own words, with no traceback.
    engine = make_engine(mariadb_url)
    with caplog.at_level("INFO"):
        with engine.connect() as connection:
            session = connection.execute(text("SELECT CONNECTION_ID()")).scalar()
            connection.commit()
            kill_session(mariadb_url, session)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT CONNECTION_ID()")).scalar() != session
    engine.dispose()
    assert not [record for record in caplog.records if record.levelno >= 30], caplog.text
    assert "a pooled connection was lost" in caplog.text


def test_a_connection_returned_in_a_transaction_is_rolled_back(mariadb_url):
    engine = make_engine(mariadb_url)
    with engine.connect() as connection:
        connection.execute(text("CREATE TABLE u (x INT)"))
        connection.commit()
    raw = engine.raw_connection()  # no Connection to end its transaction: the pool must
    cursor = raw.cursor()
    cursor.execute("INSERT INTO u VALUES (1)")
    cursor.close()
    raw.close()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM u")).scalar() == 0
    engine.dispose()
