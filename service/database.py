"""One read-only database connection per request, given back when the request ends."""
from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from db.engine import make_engine


def init_app(app: Flask, database_url: str) -> None:
    """Open the engine read-only and give each request's connection back on teardown."""
    # Never migrate here: the jobs own the schema; the service only reads it.
    app.extensions["db_engine"] = make_engine(database_url, read_only=True, autocommit=True)
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
