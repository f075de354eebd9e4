"""Engines and sessions from DATABASE_URL, and bringing a database up to date."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import sessionmaker

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# A pooled connection of the service idle for longer than this is pinged before use. A
# restart of the server takes longer, so every connection it broke gets pinged and
# replaced; one that served a request moments ago is not, which saves a round trip on
# every busy request.
IDLE_PING_SECONDS = 1.0


def make_engine(database_url: str, read_only: bool = False,
                autocommit: bool = False) -> Engine:
    """Return the engine of a job or of the service; on SQLite with WAL and a busy
    timeout. read_only: SQLite opens the file read-only, MariaDB makes each session READ
    ONLY. autocommit (the service's reads, MariaDB): every SELECT on its own."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if read_only and database and database != ":memory:":
            # mode=ro makes the file itself refuse writes, whatever the caller does.
            # Quoted: a '#' or '?' in the path would otherwise end it early.
            path = quote(str(Path(database).resolve()))
            url = url.set(database=f"file:{path}?mode=ro",
                          query={**url.query, "uri": "true"})
        elif database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            if not read_only:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    if autocommit:
        return _autocommit_engine(url, read_only)
    engine = create_engine(url, pool_pre_ping=True, pool_recycle=3600,
                           pool_reset_on_return=None)
    treat_driver_errors_as_lost_connections(engine)
    roll_back_on_return(engine)
    if read_only:
        event.listen(engine, "connect", lambda connection, _record: read_only_session(
            connection))
    return engine


def _autocommit_engine(url, read_only: bool) -> Engine:
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
    engine = create_engine(url, isolation_level="AUTOCOMMIT",
                           skip_autocommit_rollback=True, pool_reset_on_return=None,
                           pool_recycle=3600)
    dbapi_error = engine.dialect.loaded_dbapi.Error

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, record):
        # In production the DB user has SELECT rights only; this makes every session
        # read-only as well, so a write fails even under a user that could write.
        if read_only:
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


def treat_driver_errors_as_lost_connections(engine: Engine) -> None:
    """Make the C extension's own errors from commit() and rollback() database errors."""
    # mysql-connector's C extension lets commit() and rollback() on a lost connection
    # raise its MySQLInterfaceError, which is not a DB-API error: SQLAlchemy passes it
    # on as it is, callers that handle database errors miss it (a job's one-line exit
    # became a traceback), and the broken connection would stay in the pool.
    @event.listens_for(engine, "handle_error")
    def _as_lost_connection(context):
        error = context.original_exception
        if _from_c_extension(error):
            context.is_disconnect = True
            return OperationalError(context.statement, context.parameters, error,
                                    connection_invalidated=True)
        return None


def _from_c_extension(error: BaseException) -> bool:
    """Whether `error` is one of mysql-connector's C extension, not a DB-API error."""
    return type(error).__module__ == "_mysql_connector"


def roll_back_on_return(engine: Engine) -> None:
    """Roll back each connection the pool takes back, as the pool's own reset does, but
    replace one that was lost meanwhile without the pool's ERROR and traceback."""
    # A server that dies between a commit and the connection's return made the pool's
    # rollback fail and log a traceback, before the job's own one-line error.
    dbapi_error = engine.dialect.loaded_dbapi.Error

    @event.listens_for(engine, "reset")
    def _roll_back(dbapi_connection, record, reset_state):
        if reset_state.transaction_was_reset:
            return
        try:
            dbapi_connection.rollback()
        except Exception as error:
            if not (isinstance(error, dbapi_error) or _from_c_extension(error)):
                raise
            log.info("a pooled connection was lost (%s); the next use opens another", error)
            record.invalidate(error)


def read_only_session(dbapi_connection) -> None:
    """Make a MariaDB session refuse writes, whatever its user may do."""
    cursor = dbapi_connection.cursor()
    cursor.execute("SET SESSION TRANSACTION READ ONLY")
    cursor.close()


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def upgrade(engine: Engine) -> None:
    """Bring the database's schema up to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
