"""Neighbour lists per space; the spaces table

Revision ID: 0005
Revises: 0004

The lists stored so far are those of the original distance and become space 1,
'pool3', unchanged: nothing is recomputed. The neighbour table is copied once (minutes
for tens of millions of rows), as in 0003.
"""
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql', 'mariadb')
TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
POOL3 = 1


def _neighbours_table(name, with_space):
    space = [sa.Column('space', sa.SmallInteger(), autoincrement=False, nullable=False)]
    key = ('image_id', 'space', 'distance', 'neighbour_id') if with_space else (
        'image_id', 'distance', 'neighbour_id')
    return op.create_table(
        name,
        sa.Column('image_id', ID, autoincrement=False, nullable=False),
        *(space if with_space else []),
        sa.Column('neighbour_id', ID, autoincrement=False, nullable=False),
        sa.Column('distance', sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(['image_id'], ['images.id']),
        sa.ForeignKeyConstraint(['neighbour_id'], ['images.id']),
        sa.PrimaryKeyConstraint(*key),
        sqlite_with_rowid=False,
        **TABLE_OPTIONS)


def _lists_table(name, with_space):
    space = [sa.Column('space', sa.SmallInteger(), autoincrement=False, nullable=False)]
    return op.create_table(
        name,
        sa.Column('image_id', ID, autoincrement=False, nullable=False),
        *(space if with_space else []),
        sa.Column('length', sa.SmallInteger(), nullable=False),
        sa.Column('last_distance', sa.Double(), nullable=False),
        sa.Column('last_neighbour_id', ID, nullable=False),
        sa.ForeignKeyConstraint(['image_id'], ['images.id']),
        sa.PrimaryKeyConstraint('image_id', *(['space'] if with_space else [])),
        **TABLE_OPTIONS)


def _copy(table, create, with_space, columns, selected, where=""):
    """Replace `table` by a copy made by create(name, with_space) holding its rows."""
    create(f'{table}_new', with_space)
    op.execute(f"INSERT INTO {table}_new ({', '.join(columns)}) "
               f"SELECT {', '.join(selected)} FROM {table}{where}")
    op.drop_table(table)
    op.rename_table(f'{table}_new', table)


def upgrade():
    spaces = op.create_table(
        'spaces',
        sa.Column('id', sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column('name', sa.String(32), nullable=False),
        sa.Column('dimensions', sa.Integer()),
        sa.Column('projection', sa.LargeBinary().with_variant(mysql.LONGBLOB(), 'mysql',
                                                               'mariadb')),
        sa.Column('parameters', sa.Text()),
        sa.Column('learned_from', sa.Integer()),
        sa.Column('learned_at', TIMESTAMP),
        sa.Column('lists', sa.Integer(), nullable=False),
        sa.Column('note', sa.Text()),
        sa.Column('updated_at', TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
        **TABLE_OPTIONS)
    pool3 = f"{POOL3} AS space"
    _copy('image_neighbours', _neighbours_table, True,
          ('image_id', 'space', 'neighbour_id', 'distance'),
          ('image_id', pool3, 'neighbour_id', 'distance'))
    op.create_index('ix_image_neighbours_neighbour_id', 'image_neighbours', ['neighbour_id'])
    _copy('neighbour_lists', _lists_table, True,
          ('image_id', 'space', 'length', 'last_distance', 'last_neighbour_id'),
          ('image_id', pool3, 'length', 'last_distance', 'last_neighbour_id'))
    lists = sa.select(sa.func.count()).select_from(sa.table('neighbour_lists'))
    op.execute(spaces.insert().values(
        id=POOL3, name='pool3', dimensions=2048, lists=lists.scalar_subquery(),
        updated_at=datetime.now(timezone.utc).replace(tzinfo=None)))


def downgrade():
    # Only the original space's lists existed before.
    where = f" WHERE space = {POOL3}"
    columns = ('image_id', 'neighbour_id', 'distance')
    _copy('image_neighbours', _neighbours_table, False, columns, columns, where)
    op.create_index('ix_image_neighbours_neighbour_id', 'image_neighbours', ['neighbour_id'])
    columns = ('image_id', 'length', 'last_distance', 'last_neighbour_id')
    _copy('neighbour_lists', _lists_table, False, columns, columns, where)
    op.drop_table('spaces')
