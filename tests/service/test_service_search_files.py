"""The search files of a new grouping run, built from the previous run's: equal byte for
byte to files built afresh, with only the vectors stored since read from the database."""
from __future__ import annotations

import numpy as np

from db.engine import make_engine, upgrade
from db.models import MISSING
from grouping_support import add_images, change_image
from jobs.grouping.run import run as run_grouping
from numerics.vectors import DIMENSIONS
from service import create_app, vector_store
from service.vector_store import VectorStore


def files_of(run) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(run.iterdir())}


def test_a_new_set_copies_the_unchanged_vectors_and_equals_a_fresh_one(
        database_url, settings_for, few_to_learn, tmp_path, monkeypatch):
    engine = make_engine(database_url)
    upgrade(engine)
    rng = np.random.default_rng(41)

    def vectors(count):
        return np.maximum(rng.normal(size=(count, DIMENSIONS)), 0).astype(np.float32)

    ids = add_images(engine, vectors(30))
    settings = settings_for(database_url=database_url, image_root=tmp_path,
                            whitened_dimensions=8, augmented_k=2)
    run_grouping(settings, quiet=True)
    app = create_app(settings)
    store = app.extensions["search_store"]
    read = []
    original = vector_store.vectors_with_versions

    def counted(connection, image_ids):
        read.extend(int(i) for i in image_ids)
        return original(connection, image_ids)

    monkeypatch.setattr(vector_store, "vectors_with_versions", counted)

    def build_and_compare(relearn=False) -> tuple[list[int], int]:
        """Group, build the new set from the previous one and afresh; return the ids
        the first read from the database, and how many the fresh one read."""
        run_grouping(settings, quiet=True, relearn=relearn)
        with app.extensions["db_engine"].connect() as connection:
            read.clear()
            job = store.current(connection).job_id
            incremental = sorted(read)
            read.clear()
            fresh = VectorStore(tmp_path / f"fresh-{job}", database_url,
                                app.extensions["db_engine"])
            fresh.current(connection)
        built = files_of(store.folder / f"run-{job}")
        assert set(built) == {"ids.npy", "updated_at.npy", "meta.json", "pool3.f32",
                              "whitened.f32", "augmented.f32"}
        assert built == files_of(fresh.folder / f"run-{job}")
        return incremental, len(read)

    with app.extensions["db_engine"].connect() as connection:
        store.current(connection)
    # New images, one changed vector, one image gone: only the new and the changed
    # vectors are read; a fresh build reads all 32.
    new = add_images(engine, vectors(3))
    change_image(engine, ids[4], vector=vectors(1)[0])
    change_image(engine, ids[5], status=MISSING)
    assert build_and_compare() == (sorted(new + [ids[4]]), 32)
    # Another projection: the whitened vectors are projected again, none read again.
    assert build_and_compare(relearn=True) == ([], 32)
    engine.dispose()
    app.extensions["db_engine"].dispose()
