"""Helpers for the grouping job's tests: images with features, the stored lists, the
oracle's lists, steps a feature job could take."""
from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest
from hypothesis import strategies as st
from sqlalchemy import func, insert, select, update

from db import neighbours as neighbour_table
from db.features import load_vectors
from db.engine import make_engine, upgrade
from db.models import (MISSING, OK, POOL3, SPACE_IDS, WHITENED, Image, ImageFeatures,
                       ImageNeighbour, Job, NeighbourList)
from db.spaces import stored_whitening
from jobs.grouping.run import run as run_job
from numerics.engine import exact_squared_distances
from numerics.vectors import DIMENSIONS, MODEL_NAME, encode_vector
import oracle

_names = itertools.count()


def embed(small: np.ndarray) -> np.ndarray:
    """Return 2048-d vectors holding `small` in their first dimensions, zeros after."""
    vectors = np.zeros((len(small), DIMENSIONS), dtype=np.float32)
    vectors[:, :small.shape[1]] = small
    return vectors


def add_images(engine, vectors, status=OK) -> list[int]:
    """Insert images with features as the feature job leaves them; return their ids."""
    paths = [f"archive/{next(_names):06d}.jpg" for _ in range(len(vectors))]
    with engine.begin() as connection:
        connection.execute(insert(Image), [
            {"path": path, "path_hash": hashlib.sha256(path.encode()).hexdigest(),
             "file_name": path.rsplit("/", 1)[1], "status": status, "needs_grouping": True}
            for path in paths])
        by_path = dict(connection.execute(select(Image.path, Image.id)
                                          .where(Image.path.in_(paths))).all())
        ids = [by_path[path] for path in paths]
        connection.execute(insert(ImageFeatures), [
            {"image_id": image_id, "model": MODEL_NAME, "vector": encode_vector(vector)}
            for image_id, vector in zip(ids, vectors)])
    return ids


def change_image(engine, image_id, vector=None, status=None):
    """Change an image's features or status and flag it, as the feature job does."""
    with engine.begin() as connection:
        if vector is not None:
            connection.execute(update(ImageFeatures)
                               .where(ImageFeatures.image_id == image_id)
                               .values(vector=encode_vector(vector)))
        values = {"needs_grouping": True}
        if status is not None:
            values["status"] = status
        connection.execute(update(Image).where(Image.id == image_id).values(**values))


def pool3(counts: dict) -> dict:
    """Return a run's counts with those of the original space at the top."""
    return {**counts, **(counts.get("spaces") or {}).get(POOL3, {})}


def run(settings, **options) -> dict:
    """Run the grouping job; most tests here look at the original space only."""
    return pool3(run_job(settings, **options))


def stored_lists(engine, space=POOL3) -> dict[int, tuple[list[int], list[float]]]:
    """Return every stored list of a space in list order; each list's neighbour_lists
    row must hold its length and last entry."""
    lists: dict = {}
    with engine.connect() as connection:
        for image_id, neighbour_id, distance in connection.execute(
                select(ImageNeighbour.image_id, ImageNeighbour.neighbour_id,
                       ImageNeighbour.distance)
                .where(ImageNeighbour.space == SPACE_IDS[space])
                .order_by(ImageNeighbour.image_id, ImageNeighbour.distance,
                          ImageNeighbour.neighbour_id)):
            ids, distances = lists.setdefault(image_id, ([], []))
            ids.append(neighbour_id)
            distances.append(distance)
        ends = {row[0]: tuple(row[1:]) for row in connection.execute(
            select(NeighbourList.image_id, NeighbourList.length,
                   NeighbourList.last_distance, NeighbourList.last_neighbour_id)
            .where(NeighbourList.space == SPACE_IDS[space]))}
    assert ends == {image_id: (len(ids), distances[-1], ids[-1])
                    for image_id, (ids, distances) in lists.items()}
    return lists


def expected_lists(engine, k, project=None,
                   excluded=frozenset()) -> dict[int, tuple[list[int], list[float]]]:
    """Return the oracle's lists of the images now 'ok' and not in `excluded` (exact data
    only), or of project(their vectors), every pair's distance by the engine's exact
    kernel."""
    ids, vectors = load_vectors(engine)
    keep = np.array([i not in excluded for i in ids.tolist()], dtype=bool)
    ids, vectors = ids[keep], vectors[keep]
    if project is None:
        return oracle.all_lists(ids, vectors, k)
    projected = project(vectors)
    rows, columns = np.divmod(np.arange(len(ids) ** 2), len(ids))
    squared = exact_squared_distances(projected[rows], projected[columns]).reshape(
        len(ids), len(ids))
    return oracle.all_lists(ids, projected, k, squared)


def job_rows(engine):
    with engine.connect() as connection:
        return connection.execute(select(Job.outcome, Job.counts).where(
            Job.kind == "grouping").order_by(Job.id)).all()


def flagged(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(Image).where(
            Image.needs_grouping.is_(True))).scalar_one()


def database(url, settings_for):
    engine = make_engine(url)
    upgrade(engine)
    yield engine, settings_for(database_url=url)
    engine.dispose()


small_vector = st.lists(st.integers(0, 2), min_size=3, max_size=3)
operations = st.lists(st.tuples(st.sampled_from(["add", "change", "remove", "restore"]),
                                st.integers(0, 10 ** 6), small_vector),
                      min_size=1, max_size=4)


def apply_step(engine, ids: list[int], operation: str, pick: int, values) -> None:
    """Add, change, remove or restore an image as the feature job would; ids grows."""
    vector = embed(np.array([values], dtype=np.float32))[0]
    target = ids[pick % len(ids)]
    if operation == "add":
        ids += add_images(engine, [vector])
    elif operation == "change":
        change_image(engine, target, vector=vector)
    elif operation == "remove":
        change_image(engine, target, status=MISSING)
    else:
        change_image(engine, target, status=OK)


def run_interrupted(monkeypatch, settings, writes) -> list[tuple[list[int], int]]:
    """Run with a KeyboardInterrupt in the write after `writes` blocks; return those."""
    write_lists = neighbour_table.write_lists
    written = []

    def interrupting(engine, space, changes, *args, **kwargs):
        if len(written) == writes:
            raise KeyboardInterrupt
        rows = write_lists(engine, space, changes, *args, **kwargs)
        written.append((sorted(changes.replaced), rows))
        return rows

    monkeypatch.setattr(neighbour_table, "write_lists", interrupting)
    with pytest.raises(KeyboardInterrupt):
        run(settings, k=4, quiet=True, block_rows=4)
    monkeypatch.setattr(neighbour_table, "write_lists", write_lists)
    return written


def whitened_lists_are_exact(engine, k):
    projection, _ = stored_whitening(engine)
    assert stored_lists(engine, WHITENED) == expected_lists(engine, k, projection.apply)
    return projection
