"""The schema's two sources: db/schema_mariadb.sql run as MariaDB's docker entrypoint
runs it, and the Alembic migrations run step by step."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine

SCHEMA_SQL = Path(__file__).resolve().parent.parent / "db" / "schema_mariadb.sql"


def statements(sql: str) -> list[str]:
    """Split the file into statements (it holds no procedures or quoted semicolons)."""
    lines = [line for line in sql.splitlines() if not line.startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip().rstrip(";")]


def load_sql(database_url: str) -> None:
    """Run the SQL file in the database, as MariaDB's docker entrypoint does."""
    engine = create_engine(database_url)
    with engine.begin() as connection:
        for statement in statements(SCHEMA_SQL.read_text(encoding="utf-8")):
            connection.exec_driver_sql(statement.rstrip(";"))
    engine.dispose()


def migrator(engine):
    """Return migrate(step, revision): alembic's upgrade or downgrade on the engine."""
    from alembic.config import Config

    from db.engine import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))

    def migrate(step, revision):
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            step(config, revision)
    return migrate
