"""Neighbour rows keyed by (image_id, distance, neighbour_id), no stored rank;
neighbour_lists

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def _neighbours_table(name, with_rank):
    rank = [sa.Column('rank', sa.SmallInteger(), autoincrement=False, nullable=False)]
    key = ('image_id', 'rank') if with_rank else ('image_id', 'distance', 'neighbour_id')
    return op.create_table(
        name,
        sa.Column('image_id', ID, autoincrement=False, nullable=False),
        *(rank if with_rank else []),
        sa.Column('neighbour_id', ID, autoincrement=False, nullable=False),
        sa.Column('distance', sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(['image_id'], ['images.id']),
        sa.ForeignKeyConstraint(['neighbour_id'], ['images.id']),
        sa.PrimaryKeyConstraint(*key),
        sqlite_with_rowid=with_rank,
        **TABLE_OPTIONS)


def upgrade():
    op.create_table(
        'neighbour_lists',
        sa.Column('image_id', ID, autoincrement=False, nullable=False),
        sa.Column('length', sa.SmallInteger(), nullable=False),
        sa.Column('last_distance', sa.Double(), nullable=False),
        sa.Column('last_neighbour_id', ID, nullable=False),
        sa.ForeignKeyConstraint(['image_id'], ['images.id']),
        sa.PrimaryKeyConstraint('image_id'),
        **TABLE_OPTIONS)
    rank = _quoted("rank")
    # Each stored list's last entry is the one at its highest rank.
    op.execute("INSERT INTO neighbour_lists (image_id, length, last_distance, "
               f"last_neighbour_id) SELECT n.image_id, n.{rank}, n.distance, n.neighbour_id "
               f"FROM image_neighbours n WHERE n.{rank} = (SELECT MAX(m.{rank}) FROM "
               "image_neighbours m WHERE m.image_id = n.image_id)")
    _neighbours_table('image_neighbours_new', with_rank=False)
    op.execute("INSERT INTO image_neighbours_new (image_id, neighbour_id, distance) "
               "SELECT image_id, neighbour_id, distance FROM image_neighbours")
    op.drop_table('image_neighbours')
    op.rename_table('image_neighbours_new', 'image_neighbours')
    op.create_index('ix_image_neighbours_neighbour_id', 'image_neighbours', ['neighbour_id'])


def downgrade():
    _neighbours_table('image_neighbours_old', with_rank=True)
    op.execute(f"INSERT INTO image_neighbours_old (image_id, {_quoted('rank')}, "
               "neighbour_id, distance) SELECT image_id, ROW_NUMBER() OVER (PARTITION BY "
               "image_id ORDER BY distance, neighbour_id), neighbour_id, distance "
               "FROM image_neighbours")
    op.drop_table('image_neighbours')
    op.rename_table('image_neighbours_old', 'image_neighbours')
    op.create_index('ix_image_neighbours_neighbour_id', 'image_neighbours', ['neighbour_id'])
    op.drop_table('neighbour_lists')


def _quoted(name):
    # RANK is a reserved word on MariaDB (a window function).
    return op.get_bind().dialect.identifier_preparer.quote(name)
