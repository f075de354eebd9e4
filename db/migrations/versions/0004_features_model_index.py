"""An index on image_features.model

Revision ID: 0004
Revises: 0003

The feature job looks for vectors made by an earlier model or decoding on every run;
with the index that look-up reads no vector rows.
"""
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_image_features_model", "image_features", ["model"])


def downgrade():
    op.drop_index("ix_image_features_model", table_name="image_features")
