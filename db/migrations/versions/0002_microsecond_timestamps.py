"""Timestamps with microseconds on MariaDB

Revision ID: 0002
Revises: 0001
"""
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

COLUMNS = (("images", "created_at", False), ("images", "updated_at", False),
           ("image_features", "created_at", False), ("jobs", "started_at", False),
           ("jobs", "finished_at", True))


def upgrade():
    # SQLite stores the microseconds already; only MariaDB's DATETIME drops them.
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    for table, column, nullable in COLUMNS:
        op.alter_column(table, column, type_=mysql.DATETIME(fsp=6),
                        existing_type=mysql.DATETIME(), existing_nullable=nullable)


def downgrade():
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    for table, column, nullable in COLUMNS:
        op.alter_column(table, column, type_=mysql.DATETIME(),
                        existing_type=mysql.DATETIME(fsp=6), existing_nullable=nullable)
