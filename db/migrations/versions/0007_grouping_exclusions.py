"""The grouping_exclusions table: images left out of the grouping by the latest run

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql', 'mariadb')
TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        'grouping_exclusions',
        sa.Column('image_id', ID, autoincrement=False, nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('excluded_at', TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(['image_id'], ['images.id']),
        sa.PrimaryKeyConstraint('image_id'),
        **TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table('grouping_exclusions')
