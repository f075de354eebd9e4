"""One read-only database connection per request, closed when the request ends."""
from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, make_url

from db.engine import make_engine


def init_app(app: Flask, database_url: str) -> None:
    """Open the engine read-only and close each request's connection on teardown."""
    # Never migrate here: the jobs own the schema; the service only reads it.
    if make_url(database_url).get_backend_name() in ("mysql", "mariadb"):
        # As make_engine, less the pool's own ROLLBACK when a connection comes back:
        # closing the request's connection has just rolled back, and a neighbour list
        # costs only three round trips (ping, SELECT, ROLLBACK), so a fourth shows.
        engine = create_engine(database_url, pool_pre_ping=True, pool_recycle=3600,
                               pool_reset_on_return=None)
    else:
        engine = make_engine(database_url, read_only=True)
    if engine.dialect.name in ("mysql", "mariadb"):
        # In production the DB user has SELECT rights only; this makes every session
        # read-only as well, so a write fails even under a user that could write.
        @event.listens_for(engine, "connect")
        def _read_only(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("SET SESSION TRANSACTION READ ONLY")
            cursor.close()
    app.extensions["db_engine"] = engine
    app.teardown_appcontext(_close_connection)


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
        db_connection.close()
