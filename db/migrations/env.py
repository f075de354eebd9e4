"""Alembic environment: runs on the connection handed over by db.engine.upgrade."""
from alembic import context

from db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run migrations through db.engine.upgrade(engine)")
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
