"""The augmented space: its state (augmentation_neighbours) and settings (spaces columns)

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        'augmentation_neighbours',
        sa.Column('image_id', ID, autoincrement=False, nullable=False),
        sa.Column('position', sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column('neighbour_id', ID, nullable=False),
        sa.ForeignKeyConstraint(['image_id'], ['images.id']),
        sa.PrimaryKeyConstraint('image_id', 'position'),
        **TABLE_OPTIONS,
    )
    with op.batch_alter_table('spaces') as batch:
        batch.add_column(sa.Column('augmented_k', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('augmented_alpha', sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('spaces') as batch:
        batch.drop_column('augmented_alpha')
        batch.drop_column('augmented_k')
    op.drop_table('augmentation_neighbours')
