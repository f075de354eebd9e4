"""The augmented space on SQLite and MariaDB: its lists against a float64 brute force over
vectors augmented from the oracle's nearest, incremental runs against full runs."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings as hypothesis_settings, \
    strategies as st
from sqlalchemy import delete, select

from db.features import load_vectors
from db.models import (AUGMENTED, MISSING, AugmentationNeighbour, GroupingExclusion, Image,
                       ImageFeatures, ImageNeighbour, Job, NeighbourList, Space)
from db.spaces import overview, stored_whitening
from jobs.grouping import plan
from jobs.grouping.run import run as run_job
from numerics.augmentation import augment
from numerics.engine import exact_squared_distances
from grouping_support import (add_images, apply_step, change_image, embed, small_vector,
                              stored_lists)
import oracle


def clear(engine):
    with engine.begin() as connection:
        for table in (AugmentationNeighbour, GroupingExclusion, ImageNeighbour,
                      NeighbourList, ImageFeatures, Image, Job, Space):
            connection.execute(delete(table))


def expected(engine, k, augmented_k, alpha, excluded=frozenset()):
    """Return the brute force's lists in the augmented space of the 'ok' images outside
    `excluded`: whitened by the stored projection, each image's nearest by the oracle,
    augmented, then every pair's exact distance."""
    ids, vectors = load_vectors(engine)
    keep = ~np.isin(ids, list(excluded))
    ids, vectors = ids[keep], vectors[keep]
    projection, _ = stored_whitening(engine)
    whitened = projection.apply(vectors)
    rows, columns = np.divmod(np.arange(len(ids) ** 2), len(ids))
    squared = exact_squared_distances(whitened[rows], whitened[columns]).reshape(
        len(ids), len(ids))
    nearest = np.full((len(ids), augmented_k), -1)
    for row, (found, _) in enumerate(oracle.nearest(whitened, whitened, ids, augmented_k,
                                                    ids, squared)):
        nearest[row, :len(found)] = np.searchsorted(ids, found)
    vectors = augment(whitened, nearest, alpha)
    squared = exact_squared_distances(vectors[rows], vectors[columns]).reshape(
        len(ids), len(ids))
    return oracle.all_lists(ids, vectors, k, squared)


def state(engine):
    with engine.connect() as connection:
        return connection.execute(select(AugmentationNeighbour.image_id,
                                         AugmentationNeighbour.position,
                                         AugmentationNeighbour.neighbour_id)
                                  .order_by(AugmentationNeighbour.image_id,
                                            AugmentationNeighbour.position)).all()


def excluding(settings, engine, excluded):
    with engine.connect() as connection:
        names = dict(connection.execute(select(Image.id, Image.path)).all())
    return settings.replace(exclude_patterns=tuple(names[i] for i in sorted(excluded)))


steps = st.lists(st.one_of(
    st.tuples(st.sampled_from(["add", "add", "change", "remove", "restore"]),
              st.integers(0, 10 ** 6), small_vector),
    st.tuples(st.just("exclude"), st.integers(0, 10 ** 6), small_vector)),
    min_size=1, max_size=4)


@hypothesis_settings(max_examples=10, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])
@given(initial=st.lists(small_vector, min_size=5, max_size=12), k=st.integers(1, 6),
       augmented_k=st.integers(1, 4), alpha=st.sampled_from([0.0, 1.0, 3.0]), steps=steps)
def test_incremental_runs_equal_full_runs_in_the_augmented_space(
        grouping_db, few_to_learn, monkeypatch, initial, k, augmented_k, alpha, steps):
    # Small integers: duplicates and exact ties in the whitened space, decided by id.
    assume(len({tuple(vector) for vector in initial}) > 2)  # some variance to learn
    # Moved vectors reach most lists of a dozen images: rebuild them all the same.
    monkeypatch.setattr(plan, "REBUILD_SHARE", 2.0)
    engine, settings = grouping_db
    settings = settings.replace(augmented_k=augmented_k, augmented_alpha=alpha)
    clear(engine)
    ids = add_images(engine, embed(np.array(initial, dtype=np.float32)))
    counts = run_job(settings, k=k, quiet=True)["spaces"][AUGMENTED]
    assert counts["mode"] == "full"
    assert stored_lists(engine, AUGMENTED) == expected(engine, k, augmented_k, alpha)
    excluded: set[int] = set()
    for step in steps:
        if step[0] == "exclude":
            excluded ^= {ids[step[1] % len(ids)]}
        else:
            apply_step(engine, ids, *step)
        counts = run_job(excluding(settings, engine, excluded), k=k,
                         quiet=True)["spaces"][AUGMENTED]
        assert stored_lists(engine, AUGMENTED) == expected(engine, k, augmented_k, alpha,
                                                           excluded), (step, counts)
    incremental, neighbours = stored_lists(engine, AUGMENTED), state(engine)
    assert run_job(excluding(settings, engine, excluded), k=k, full=True,
                   quiet=True)["spaces"][AUGMENTED]["mode"] == "full"
    assert stored_lists(engine, AUGMENTED) == incremental
    assert state(engine) == neighbours


def test_few_new_images_recompute_few_neighbours(grouping_db, few_to_learn):
    engine, settings = grouping_db
    rng = np.random.default_rng(4)
    add_images(engine, embed(rng.normal(size=(60, 8)).astype(np.float32)))
    run_job(settings, k=5, quiet=True)
    add_images(engine, embed(rng.normal(size=(2, 8)).astype(np.float32)))
    counts = run_job(settings, k=5, quiet=True)["spaces"][AUGMENTED]
    assert counts["mode"] == "incremental"
    # Two new vectors, and the few images they come near: far from all 62 lists.
    assert counts["lists_full"] < 40
    assert stored_lists(engine, AUGMENTED) == expected(engine, 5, 3, 1.0)
    # More new images than old: a full run of the space (plan.REBUILD_SHARE).
    add_images(engine, embed(rng.normal(size=(70, 8)).astype(np.float32)))
    assert run_job(settings, k=5, quiet=True)["spaces"][AUGMENTED]["mode"] == "full"
    assert stored_lists(engine, AUGMENTED) == expected(engine, 5, 3, 1.0)


def test_a_change_of_k_or_alpha_recomputes_the_space_and_zero_removes_it(grouping_db,
                                                                         few_to_learn):
    engine, settings = grouping_db
    rng = np.random.default_rng(6)
    ids = add_images(engine, embed(rng.normal(size=(20, 6)).astype(np.float32)))
    run_job(settings, k=4, quiet=True)
    for changed in (settings.replace(augmented_k=2), settings.replace(augmented_k=2,
                                                                      augmented_alpha=3)):
        assert run_job(changed, k=4, quiet=True)["spaces"][AUGMENTED]["mode"] == "full"
        assert stored_lists(engine, AUGMENTED) == expected(
            engine, 4, changed.augmented_k, changed.augmented_alpha)
    # --relearn: a new whitening, so the augmented space afresh too.
    assert run_job(settings, k=4, quiet=True, relearn=True)["spaces"][AUGMENTED][
        "mode"] == "full"
    assert stored_lists(engine, AUGMENTED) == expected(engine, 4, 3, 1.0)
    change_image(engine, ids[0], status=MISSING)
    counts = run_job(settings.replace(augmented_k=0), k=4, quiet=True)
    assert AUGMENTED not in counts["spaces"] and not stored_lists(engine, AUGMENTED)
    with engine.connect() as connection:
        assert AUGMENTED not in overview(connection)
    assert not state(engine)
    # The whitened space off takes the augmented one with it.
    run_job(settings, k=4, quiet=True)
    assert stored_lists(engine, AUGMENTED)
    run_job(settings.replace(whitened_dimensions=0), k=4, quiet=True)
    assert not stored_lists(engine, AUGMENTED) and not state(engine)


def test_duplicate_groups_measure_in_the_augmented_space(grouping_db, few_to_learn):
    from db.duplicates import describe
    engine, settings = grouping_db
    rng = np.random.default_rng(8)
    add_images(engine, embed(rng.normal(size=(15, 6)).astype(np.float32)))
    run_job(settings, k=4, quiet=True)
    lists = stored_lists(engine, AUGMENTED)
    owner, (neighbours, distances) = next(iter(lists.items()))
    with engine.connect() as connection:
        members = describe(connection, [[owner, *neighbours]], AUGMENTED)[0]
    np.testing.assert_allclose([m.distance for m in members[1:]], distances, rtol=1e-9)
