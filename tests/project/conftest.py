"""The project tests' fixtures."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


@pytest.fixture
def init_users(mariadb_url):
    """Yield (env, database URL) after running the schema and users init files."""
    from schema_support import load_sql
    load_sql(mariadb_url)
    tag = uuid.uuid4().hex[:8]
    env = {"MARIADB_DATABASE": make_url(mariadb_url).database,
           "DB_JOBS_USER": f"t_jobs_{tag}", "DB_JOBS_PASSWORD": f"jobs-{tag}",
           "DB_SERVICE_USER": f"t_svc_{tag}", "DB_SERVICE_PASSWORD": f"svc.{tag}"}
    admin = create_engine(make_url(mariadb_url).set(database=None))
    try:
        yield env, mariadb_url
    finally:
        with admin.begin() as connection:
            for user in (env["DB_JOBS_USER"], env["DB_SERVICE_USER"]):
                connection.execute(text("DROP USER IF EXISTS :user@'%'"), {"user": user})
        admin.dispose()
