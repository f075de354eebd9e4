"""db/schema_mariadb.sql (docker's init file) equals the schema the migrations build."""
from __future__ import annotations

import re

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, select, text

from db.engine import MIGRATIONS, make_engine, make_sessionmaker, upgrade
from db.models import Base, Image
from schema_support import SCHEMA_SQL, load_sql


def describe(database_url: str) -> dict[str, str]:
    """Return each table's SHOW CREATE TABLE, without the AUTO_INCREMENT counter."""
    engine = create_engine(database_url)
    with engine.connect() as connection:
        names = connection.execute(text("SHOW TABLES")).scalars().all()
        result = {}
        for name in names:
            create = connection.execute(text(f"SHOW CREATE TABLE `{name}`")).one()[1]
            result[name] = re.sub(r" AUTO_INCREMENT=\d+", "", create)
    engine.dispose()
    return result


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def revision_of(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    engine.dispose()
    return rows


def test_sql_file_builds_the_same_tables_as_the_migrations(mariadb_url,
                                                           migrated_mariadb_url):
    load_sql(mariadb_url)
    from_file, from_migrations = describe(mariadb_url), describe(migrated_mariadb_url)
    assert sorted(from_file) == sorted(from_migrations)
    assert set(from_file) == {t.name for t in Base.metadata.sorted_tables} | {"alembic_version"}
    for name in from_migrations:
        assert from_file[name] == from_migrations[name], (
            f"table {name} differs; regenerate with tools/make_schema_sql.py")


def test_sql_file_is_stamped_with_the_head_revision(mariadb_url):
    load_sql(mariadb_url)
    assert revision_of(mariadb_url) == [head_revision()]


def test_jobs_accept_a_database_made_from_the_sql_file(mariadb_url):
    load_sql(mariadb_url)
    engine = make_engine(mariadb_url)
    upgrade(engine)  # a no-op at head; would fail on existing tables if unstamped
    Session = make_sessionmaker(engine)
    with Session.begin() as session:
        session.add(Image(path="a/b.jpg", path_hash="0" * 64, file_name="b.jpg"))
    with Session() as session:
        assert session.scalars(select(Image.path)).all() == ["a/b.jpg"]
    engine.dispose()
    assert revision_of(mariadb_url) == [head_revision()]


def test_sql_file_runs_in_the_database_docker_selects():
    # The entrypoint runs it inside MARIADB_DATABASE: no database switch, no users.
    sql = SCHEMA_SQL.read_text(encoding="utf-8")
    body = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
    for forbidden in ("USE ", "CREATE DATABASE", "CREATE USER", "GRANT ", "IDENTIFIED"):
        assert forbidden not in body.upper()
