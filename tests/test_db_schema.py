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
