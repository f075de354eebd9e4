"""One read-only database session per request, closed when the request ends."""
from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy import create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from db.engine import make_engine, make_sessionmaker


def init_app(app: Flask, database_url: str) -> None:
    """Open the engine read-only and close each request's session on teardown."""
    # Never migrate here: the jobs own the schema; the service only reads it.
    if make_url(database_url).get_backend_name() in ("mysql", "mariadb"):
        # As make_engine, less the pool's own ROLLBACK when a connection comes back:
        # the session has just rolled back on close, and a neighbour list costs only
        # four round trips (ping, ping, SELECT, ROLLBACK), so a fifth is noticeable.
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
    app.extensions["db_sessionmaker"] = make_sessionmaker(engine)
    app.teardown_appcontext(_close_session)


def session() -> Session:
    """Return this request's session, opening it on first use."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["db_sessionmaker"]()
    return g.db_session


def _close_session(_exception=None) -> None:
    db_session = g.pop("db_session", None)
    if db_session is not None:
        db_session.close()
