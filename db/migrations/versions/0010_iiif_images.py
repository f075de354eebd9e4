"""Images of IIIF collections: where to fetch them, where they came from, validators

Revision ID: 0010
Revises: 0009

Columns of images for import_iiif.py and the feature job's HTTP fetch; NULL for the files
under IMAGE_ROOT, so existing rows are unchanged.
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

TEXT_COLUMNS = ('source_url', 'iiif_service', 'iiif_source', 'manifest_id', 'canvas_id',
                'iiif_label')


def upgrade() -> None:
    with op.batch_alter_table('images') as batch:
        for name in TEXT_COLUMNS:
            batch.add_column(sa.Column(name, sa.Text(), nullable=True))
        batch.add_column(sa.Column('http_etag', sa.String(255), nullable=True))
        batch.add_column(sa.Column('http_last_modified', sa.String(64), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35 too): a batch would copy the table
    # and drop the old one, which the tables referencing images forbid.
    for name in ('http_last_modified', 'http_etag', *reversed(TEXT_COLUMNS)):
        op.drop_column('images', name)
