"""The title_words table: the words of catalogue titles and record ids, for the
word-anywhere search; filled from the records already imported

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

from db.title_words import replace_words

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
BATCH = 5000  # records read and written per statement pair

records = sa.table('catalogue_records', sa.column('image_id'), sa.column('external_id'),
                   sa.column('title'))


def upgrade() -> None:
    op.create_table(
        'title_words',
        sa.Column('word', sa.String(64), nullable=False),
        sa.Column('image_id', ID, autoincrement=False, nullable=False),
        sa.ForeignKeyConstraint(['image_id'], ['images.id']),
        sa.PrimaryKeyConstraint('word', 'image_id'),
        **TABLE_OPTIONS,
    )
    op.create_index('ix_title_words_image_id_word', 'title_words', ['image_id', 'word'])
    connection = op.get_bind()
    last = 0
    while True:
        rows = connection.execute(
            sa.select(records.c.image_id, records.c.external_id, records.c.title)
            .where(records.c.image_id > last).order_by(records.c.image_id).limit(BATCH)).all()
        if not rows:
            break
        replace_words(connection, {row.image_id: (row.external_id, row.title)
                                   for row in rows})
        last = rows[-1].image_id


def downgrade() -> None:
    op.drop_table('title_words')
