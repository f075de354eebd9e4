"""Migration 0009: a catalogue imported before it is searchable after it, on both
databases; a downgrade drops the words and a new upgrade writes them again."""
from __future__ import annotations

from datetime import datetime

import numpy as np
import sqlalchemy as sa
from alembic import command
from sqlalchemy import insert

from db.engine import make_engine
from db.title_words import search, words
from grouping_support import add_images
from schema_support import migrator

RECORDS = sa.table("catalogue_records", *(sa.column(name) for name in (
    "image_id", "external_id", "title", "title_key", "excluded", "updated_at")))
TITLES = ["Youth (Edvard Munch)", "Straße im Regen", None, "L'Éléphant, 1905"]


def test_existing_records_are_searchable_after_the_upgrade(database_url):
    engine = make_engine(database_url)
    migrate = migrator(engine)
    migrate(command.upgrade, "0008")
    ids = add_images(engine, np.ones((len(TITLES) + 1, 2048), dtype=np.float32))
    with engine.begin() as connection:
        connection.execute(insert(RECORDS), [
            {"image_id": image_id, "external_id": f"Inv-{n}", "title": title,
             "title_key": title and title.casefold(), "excluded": False,
             "updated_at": datetime(2026, 1, 1)}
            for n, (image_id, title) in enumerate(zip(ids, TITLES))])
    for _ in range(2):  # and again after a downgrade
        migrate(command.upgrade, "head")
        with engine.connect() as connection:
            def found(text):
                return [row.id for row in search(connection, words(text)).rows]
            assert found("munch") == [ids[0]]
            assert found("STRASSE regen") == [ids[1]]
            assert found("elephant 19") == [ids[3]]
            assert found("inv-2") == [ids[2]]
            assert sorted(found("INV")) == ids[:len(TITLES)]
            assert found("regen munch") == []
        migrate(command.downgrade, "0008")
        assert not sa.inspect(engine).has_table("title_words")
    engine.dispose()
