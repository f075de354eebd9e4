from datetime import datetime

from sqlalchemy import inspect

from db.engine import make_engine, upgrade
from db.models import Base


def test_migrations_create_the_models_schema(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    upgrade(engine)  # a second run is a no-op
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    for name, table in Base.metadata.tables.items():
        columns = {c["name"] for c in inspect(engine).get_columns(name)}
        assert columns == {c.name for c in table.columns}
    engine.dispose()


def test_read_only_sqlite_opens_a_path_with_uri_characters(tmp_path):
    url = f"sqlite:///{tmp_path / 'scans #2 100%' / 'images.sqlite3'}"
    upgrade(make_engine(url))
    reader = make_engine(url, read_only=True)
    assert "images" in inspect(reader).get_table_names()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scans #2 100%"]  # no stray file made
    reader.dispose()


def test_timestamps_keep_microseconds_also_after_upgrading_an_older_database(database_url):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import insert, select

    from db.engine import MIGRATIONS
    from db.models import Image

    engine = make_engine(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    stamp = datetime(2026, 11, 22, 12, 0, 0, 123456)
    with engine.begin() as connection:
        connection.execute(insert(Image).values(
            path="a.jpg", path_hash="0" * 64, file_name="a.jpg", status="ok",
            needs_grouping=True, created_at=stamp, updated_at=stamp))
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(insert(Image).values(
            path="b.jpg", path_hash="1" * 64, file_name="b.jpg", status="ok",
            needs_grouping=True, created_at=stamp, updated_at=stamp))
        rows = dict(connection.execute(select(Image.path, Image.updated_at)).all())
    assert rows["b.jpg"] == stamp  # the grouping job tells changes apart by updated_at
    assert rows["a.jpg"].replace(microsecond=0) == stamp.replace(microsecond=0)  # kept
    engine.dispose()
