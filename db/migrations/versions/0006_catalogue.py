"""Browsing keys on images; catalogue records

Revision ID: 0006
Revises: 0005

images gains path_key and folder_key (the first bytes of the path and of its folder, as
VARBINARY on MariaDB), indexed for browsing in path order and for the folder tree; the
existing rows are filled in here, in batches, by the models' own functions. The new
table catalogue_records holds what import_metadata.py reads from the catalogue's CSV.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql', 'mariadb')
TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
# Fixed here as they were at this revision: a migration must not change with the models.
KEY_BYTES = 2048
KEY = sa.LargeBinary().with_variant(mysql.VARBINARY(KEY_BYTES), 'mysql', 'mariadb')
BATCH = 10_000


def _key(text):
    return text.encode("utf-8", "surrogateescape")[:KEY_BYTES]


def _fill_keys():
    images = sa.table('images', sa.column('id'), sa.column('path'),
                      sa.column('path_key'), sa.column('folder_key'))
    update = (images.update().where(images.c.id == sa.bindparam('b_id'))
              .values(path_key=sa.bindparam('b_path_key'),
                      folder_key=sa.bindparam('b_folder_key')))
    connection, after = op.get_bind(), 0
    while True:
        rows = connection.execute(sa.select(images.c.id, images.c.path)
                                  .where(images.c.id > after).order_by(images.c.id)
                                  .limit(BATCH)).all()
        if not rows:
            return
        connection.execute(update, [{"b_id": i, "b_path_key": _key(path),
                                     "b_folder_key": _key(path.rpartition("/")[0])}
                                    for i, path in rows])
        after = rows[-1].id


def upgrade():
    # NOT NULL needs a default for the rows already there (SQLite cannot alter a column
    # later without copying the table); they are filled in before any index is built.
    for name in ('path_key', 'folder_key'):
        op.add_column('images', sa.Column(name, KEY, nullable=False,
                                          server_default=sa.text("''")))
    _fill_keys()
    if op.get_bind().dialect.name != 'sqlite':
        for name in ('path_key', 'folder_key'):
            op.alter_column('images', name, existing_type=KEY, existing_nullable=False,
                            server_default=None)
    op.create_index('ix_images_path_key', 'images', ['path_key', 'id'])
    op.create_index('ix_images_status_path_key', 'images', ['status', 'path_key', 'id'])
    op.create_index('ix_images_folder_key', 'images', ['folder_key'])
    op.create_table(
        'catalogue_records',
        sa.Column('image_id', ID, autoincrement=False, nullable=False),
        sa.Column('external_id', sa.String(255)),
        sa.Column('title', sa.Text()),
        sa.Column('title_key', sa.String(255)),
        sa.Column('url', sa.Text()),
        sa.Column('extra', sa.Text()),
        sa.Column('excluded', sa.Boolean(), nullable=False),
        sa.Column('updated_at', TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(['image_id'], ['images.id']),
        sa.PrimaryKeyConstraint('image_id'),
        sa.UniqueConstraint('external_id'),
        **TABLE_OPTIONS)
    op.create_index('ix_catalogue_records_title_key', 'catalogue_records', ['title_key'])


def downgrade():
    op.drop_table('catalogue_records')
    for name in ('ix_images_folder_key', 'ix_images_status_path_key', 'ix_images_path_key'):
        op.drop_index(name, table_name='images')
    # Plain ALTER TABLE (SQLite 3.35 and later): a batch copy of images would break
    # the foreign keys that point at it.
    op.drop_column('images', 'folder_key')
    op.drop_column('images', 'path_key')
