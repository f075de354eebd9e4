"""One read-only database connection per request, given back when the request ends."""
from __future__ import annotations

import time

from flask import Flask, current_app, g
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError

from db.engine import make_engine, read_only_session

# A pooled connection idle for longer than this is pinged before use. A restart of the
# server takes longer, so every connection it broke gets pinged and replaced; one that
# served a request moments ago is not, which saves a round trip on every busy request.
IDLE_PING_SECONDS = 1.0


def init_app(app: Flask, database_url: str) -> None:
    """Open the engine read-only and give each request's connection back on teardown."""
    # Never migrate here: the jobs own the schema; the service only reads it.
    if make_url(database_url).get_backend_name() in ("mysql", "mariadb"):
        engine = _mariadb_engine(database_url)
    else:
        engine = make_engine(database_url, read_only=True)
    app.extensions["db_engine"] = engine
    app.teardown_appcontext(_close_connection)


def _mariadb_engine(database_url: str) -> Engine:
    """Return an engine in autocommit whose pooled connections are checked after idling."""
    # Autocommit: each SELECT reads one snapshot of its own (a neighbour list is one
    # SELECT, so never half old, half new) and there is no transaction to end.
    # Only the driver's and SQLAlchemy's public API: the earlier speed-ups (a cursor
    # built around the driver's cursor(), autocommit declared rather than asked) are
    # suspects in the workers' crashes inside the C extension (bench/results/
    # reliability.md).
    # No ROLLBACK when a request's connection ends (skip_autocommit_rollback) nor when
    # the pool takes it back (pool_reset_on_return): in autocommit there is nothing to
    # roll back, and mysql-connector's C extension lets a lost connection's rollback()
    # escape as its own MySQLInterfaceError, which is not a DB-API error.
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT",
                           skip_autocommit_rollback=True, pool_reset_on_return=None,
                           pool_recycle=3600)
    dbapi_error = engine.dialect.loaded_dbapi.Error

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, record):
        # In production the DB user has SELECT rights only; this makes every session
        # read-only as well, so a write fails even under a user that could write.
        read_only_session(dbapi_connection)
        record.info["last_used"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy):
        if time.monotonic() - record.info.get("last_used", 0.0) > IDLE_PING_SECONDS:
            try:
                engine.dialect.do_ping(dbapi_connection)
            except dbapi_error as error:
                raise DisconnectionError() from error  # the pool connects afresh

    @event.listens_for(engine, "checkin")
    def _mark_used(_dbapi_connection, record):
        record.info["last_used"] = time.monotonic()

    return engine


def connection() -> Connection:
    """Return this request's connection, opening it on first use."""
    # A Core connection, not an ORM session: the reads need no ORM state, and the
    # session's bookkeeping cost a fifth of a neighbour list's CPU time.
    if "db_connection" not in g:
        g.db_connection = current_app.extensions["db_engine"].connect()
    return g.db_connection


def _close_connection(_exception=None) -> None:
    db_connection = g.pop("db_connection", None)
    if db_connection is not None:
        try:
            db_connection.close()
        except SQLAlchemyError as error:
            # The answer is made; a connection that cannot even end (the server went
            # away after the last SELECT) must not turn it into a 500. SQLAlchemy has
            # closed it and, for a lost connection, dropped it from the pool.
            current_app.logger.warning("database error ending a request: %s", error)


def discard_connection() -> None:
    """Drop this request's connection from the pool instead of giving it back."""
    # After a database error the connection's state is unknown, and the driver's error
    # is not always one SQLAlchemy reads as a disconnect: given back, a broken
    # connection would fail every request that draws it, long after the server is back.
    db_connection = g.pop("db_connection", None)
    if db_connection is not None:
        try:
            db_connection.invalidate()
            db_connection.close()
        except SQLAlchemyError as error:
            current_app.logger.warning("database error dropping a connection: %s", error)
