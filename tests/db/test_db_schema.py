from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import inspect

from db.engine import make_engine, upgrade
from schema_support import migrator
from db.models import Base

# The images table as the first revisions had it: inserts through the model would name
# columns that later revisions added.
OLD_IMAGES = sa.table("images", *(sa.column(name) for name in (
    "id", "path", "path_hash", "file_name", "status", "needs_grouping", "created_at",
    "updated_at")))


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
        connection.execute(insert(OLD_IMAGES).values(
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


def test_upgrading_keeps_the_lists_and_records_their_ends(database_url):
    from alembic import command
    from sqlalchemy import insert, select, table, column

    from db.models import ImageNeighbour, NeighbourList

    engine = make_engine(database_url)
    migrate = migrator(engine)
    migrate(command.upgrade, "0002")
    ranked = table("image_neighbours", column("image_id"), column("rank"),
                   column("neighbour_id"), column("distance"))
    # Lists as revision 0002 stored them: image 1 has a tie at its last distance.
    lists = {1: [(3, 0.5), (2, 0.75), (4, 0.75)], 2: [(1, 0.75)], 3: [(1, 0.5), (4, 2.0)]}
    with engine.begin() as connection:
        for image_id in range(1, 5):
            connection.execute(insert(OLD_IMAGES).values(
                id=image_id, path=f"{image_id}.jpg", path_hash=f"{image_id:064d}",
                file_name=f"{image_id}.jpg", status="ok", needs_grouping=False,
                created_at=datetime(2026, 1, 1), updated_at=datetime(2026, 1, 1)))
        connection.execute(insert(ranked), [
            {"image_id": i, "rank": r, "neighbour_id": n, "distance": d}
            for i, entries in lists.items() for r, (n, d) in enumerate(entries, 1)])
    upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(select(ImageNeighbour.image_id, ImageNeighbour.neighbour_id,
                                         ImageNeighbour.distance)).all()
        ends = connection.execute(select(NeighbourList.image_id, NeighbourList.length,
                                         NeighbourList.last_distance,
                                         NeighbourList.last_neighbour_id)).all()
    assert sorted(rows) == sorted((i, n, d) for i, e in lists.items() for n, d in e)
    assert sorted(ends) == [(1, 3, 0.75, 4), (2, 1, 0.75, 1), (3, 2, 2.0, 4)]
    migrate(command.downgrade, "0002")  # ranks come back from the list order
    with engine.connect() as connection:
        back = connection.execute(select(ranked.c.image_id, ranked.c.rank,
                                         ranked.c.neighbour_id, ranked.c.distance)).all()
    assert sorted(back) == sorted((i, r, n, d) for i, e in lists.items()
                                  for r, (n, d) in enumerate(e, 1))
    engine.dispose()


def test_a_read_only_engine_refuses_writes(database_url):
    """The dry runs read through such an engine: SQLite mode=ro, MariaDB READ ONLY."""
    import pytest
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    upgrade(make_engine(database_url))
    reader = make_engine(database_url, read_only=True)
    with reader.connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM images")).scalar_one() == 0
    with pytest.raises(DBAPIError, match="(?i)read.?only"):
        with reader.begin() as connection:
            connection.execute(text("DELETE FROM jobs"))
    reader.dispose()


def test_upgrading_makes_the_stored_lists_those_of_the_original_space(database_url):
    from alembic import command
    from sqlalchemy import column, insert, select, table

    from db.models import SPACE_IDS, ImageNeighbour, NeighbourList, Space

    engine = make_engine(database_url)
    migrate = migrator(engine)
    migrate(command.upgrade, "0004")
    old_rows = table("image_neighbours", column("image_id"), column("neighbour_id"),
                     column("distance"))
    old_ends = table("neighbour_lists", column("image_id"), column("length"),
                     column("last_distance"), column("last_neighbour_id"))
    with engine.begin() as connection:
        for image_id in (1, 2, 3):
            connection.execute(insert(OLD_IMAGES).values(
                id=image_id, path=f"{image_id}.jpg", path_hash=f"{image_id:064d}",
                file_name=f"{image_id}.jpg", status="ok", needs_grouping=False,
                created_at=datetime(2026, 1, 1), updated_at=datetime(2026, 1, 1)))
        connection.execute(insert(old_rows), [
            {"image_id": 1, "neighbour_id": 2, "distance": 0.5},
            {"image_id": 1, "neighbour_id": 3, "distance": 1.5},
            {"image_id": 2, "neighbour_id": 1, "distance": 0.5}])
        connection.execute(insert(old_ends), [
            {"image_id": 1, "length": 2, "last_distance": 1.5, "last_neighbour_id": 3},
            {"image_id": 2, "length": 1, "last_distance": 0.5, "last_neighbour_id": 1}])
    upgrade(engine)
    pool3, whitened = SPACE_IDS["pool3"], SPACE_IDS["whitened"]
    with engine.begin() as connection:
        assert sorted(connection.execute(select(
            ImageNeighbour.image_id, ImageNeighbour.space, ImageNeighbour.neighbour_id,
            ImageNeighbour.distance)).all()) == [(1, pool3, 2, 0.5), (1, pool3, 3, 1.5),
                                                 (2, pool3, 1, 0.5)]
        assert sorted(connection.execute(select(NeighbourList.image_id, NeighbourList.space,
                                                NeighbourList.length)).all()) == [
            (1, pool3, 2), (2, pool3, 1)]
        assert connection.execute(select(Space.id, Space.name, Space.dimensions,
                                         Space.lists)).all() == [(pool3, "pool3", 2048, 2)]
        # A list of the learned space beside: the downgrade keeps the original's only.
        connection.execute(insert(ImageNeighbour).values(image_id=1, space=whitened,
                                                         neighbour_id=3, distance=0.25))
    migrate(command.downgrade, "0004")
    with engine.connect() as connection:
        assert sorted(connection.execute(select(old_rows)).all()) == [
            (1, 2, 0.5), (1, 3, 1.5), (2, 1, 0.5)]
        assert len(connection.execute(select(old_ends)).all()) == 2
    assert "spaces" not in inspect(engine).get_table_names()
    engine.dispose()


def test_upgrading_fills_the_browsing_keys_of_the_images_there(database_url):
    from alembic import command
    from sqlalchemy import insert, select

    from db.models import KEY_BYTES, Image

    engine = make_engine(database_url)
    migrator(engine)(command.upgrade, "0005")
    paths = ["top.jpg", "Nachlass Müller/straße 1.jpg", "ü/" * 1500 + "long.jpg"]
    with engine.begin() as connection:
        for image_id, path in enumerate(paths, 1):
            connection.execute(insert(OLD_IMAGES).values(
                id=image_id, path=path, path_hash=f"{image_id:064d}", file_name="x",
                status="ok", needs_grouping=False, created_at=datetime(2026, 1, 1),
                updated_at=datetime(2026, 1, 1)))
    upgrade(engine)
    with engine.connect() as connection:
        keys = connection.execute(select(Image.path_key, Image.folder_key)
                                  .order_by(Image.id)).all()
    assert [tuple(map(bytes, k)) for k in keys] == [
        (b"top.jpg", b""),
        ("Nachlass Müller/straße 1.jpg".encode(), "Nachlass Müller".encode()),
        (paths[2].encode()[:KEY_BYTES], paths[2].rpartition("/")[0].encode()[:KEY_BYTES])]
    engine.dispose()
