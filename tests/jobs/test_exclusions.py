"""Exclusions on SQLite and MariaDB: images left out of the grouping, the set changed
between runs, killed runs, in both spaces; checked against a float64 brute force over the
vectors of the images the test itself did not exclude."""
from __future__ import annotations


import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings as hypothesis_settings, \
    strategies as st
from sqlalchemy import delete, select, update

from runtime.jobrun import JobError
from db.models import WHITENED, AugmentationNeighbour, GroupingExclusion, Image, \
    ImageFeatures, ImageNeighbour, Job, NeighbourList, Space
from db import exclusions as stored_exclusions
from jobs.grouping import exclusions
from jobs.grouping.run import run as run_job
from db.spaces import stored_whitening
from grouping_support import (add_images, apply_step, embed, expected_lists, flagged,
                              job_rows, run, run_interrupted, small_vector, stored_lists)


def clear(engine):
    with engine.begin() as connection:
        for table in (AugmentationNeighbour, GroupingExclusion, ImageNeighbour,
                      NeighbourList, ImageFeatures, Image, Job, Space):
            connection.execute(delete(table))


def paths(engine) -> dict[int, str]:
    with engine.connect() as connection:
        return dict(connection.execute(select(Image.id, Image.path)).all())


def excluding(settings, engine, excluded: set[int], by_path: bool = False):
    """Return the settings that exclude exactly these images, by file name or by path."""
    names = paths(engine)
    return settings.replace(exclude_patterns=tuple(
        names[i] if by_path else names[i].rsplit("/", 1)[1] for i in sorted(excluded)))


def brute_force(engine, k, excluded: set[int], project=None) -> dict:
    """Return the exact lists of the 'ok' images outside `excluded`, over them only."""
    return expected_lists(engine, k, project, excluded)


def assert_left_out(lists: dict, excluded: set[int]) -> None:
    assert not excluded & lists.keys()
    assert not any(excluded & set(neighbours) for neighbours, _ in lists.values())


steps = st.lists(st.one_of(
    st.tuples(st.sampled_from(["add", "change", "remove", "restore"]),
              st.integers(0, 10 ** 6), small_vector),
    st.tuples(st.just("toggle"), st.integers(0, 10 ** 6), st.booleans())),
    min_size=1, max_size=5)


def apply(engine, ids, excluded: set[int], step) -> bool:
    """Apply a step: a feature job's change, or an image excluded or included again;
    return whether to match by path (else by file name)."""
    if step[0] == "toggle":
        excluded ^= {ids[step[1] % len(ids)]}
        return step[2]
    apply_step(engine, ids, *step)
    return False


@hypothesis_settings(max_examples=12, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])
@given(initial=st.lists(small_vector, min_size=2, max_size=12), k=st.integers(1, 5),
       first=st.sets(st.integers(0, 11), max_size=4), steps=steps)
def test_incremental_runs_with_changing_exclusions_equal_full_runs(grouping_db, initial, k,
                                                                   first, steps):
    engine, settings = grouping_db
    clear(engine)
    ids = add_images(engine, embed(np.array(initial, dtype=np.float32)))
    excluded = {ids[i % len(ids)] for i in first}
    run(excluding(settings, engine, excluded), k=k, quiet=True)
    assert stored_lists(engine) == brute_force(engine, k, excluded)
    for step in steps:
        by_path = apply(engine, ids, excluded, step)
        current = excluding(settings, engine, excluded, by_path)
        counts = run(current, k=k, quiet=True)
        assert counts["exclusions"]["excluded"] == len(excluded)
        lists = stored_lists(engine)
        assert lists == brute_force(engine, k, excluded), (step, counts)
        assert_left_out(lists, excluded)
        assert flagged(engine) == 0
    incremental = stored_lists(engine)
    assert run(current, k=k, full=True, quiet=True)["mode"] == "full"
    assert stored_lists(engine) == incremental


def test_excluding_and_including_again_touch_only_the_lists_concerned(grouping_db):
    engine, settings = grouping_db
    rng = np.random.default_rng(3)
    ids = add_images(engine, embed(rng.integers(0, 6, size=(40, 4)).astype(np.float32)))
    run(settings, k=3, quiet=True)
    before = stored_lists(engine)
    target = ids[7]
    holding = {owner for owner, (neighbours, _) in before.items() if target in neighbours}
    counts = run(excluding(settings, engine, {target}), k=3, quiet=True)
    assert counts["mode"] == "incremental"
    assert counts["exclusions"] == {"excluded": 1, "newly_excluded": 1,
                                    "included_again": 0}
    # Only the lists that held it are recomputed; its own is deleted.
    assert counts["lists_full"] == len(holding) and counts["lists_deleted"] == 1
    assert stored_lists(engine) == brute_force(engine, 3, {target})
    name = paths(engine)[target].rsplit("/", 1)[1]
    with engine.connect() as connection:
        assert stored_exclusions.stored(connection) == {target: f"pattern {name}"}
    # Included again: it is searched against all and merged where it enters, as a new
    # image; nothing else is recomputed.
    counts = run(settings, k=3, quiet=True)
    assert counts["exclusions"] == {"excluded": 0, "newly_excluded": 0, "included_again": 1}
    assert counts["mode"] == "incremental" and counts["lists_full"] == 1
    assert stored_lists(engine) == before
    with engine.connect() as connection:
        assert stored_exclusions.stored(connection) == {}


def test_a_killed_run_converges_whatever_the_exclusions_did_meanwhile(grouping_db,
                                                                      monkeypatch):
    engine, settings = grouping_db
    rng = np.random.default_rng(8)
    ids = add_images(engine, embed(rng.integers(0, 4, size=(60, 4)).astype(np.float32)))
    # More than a block's lists (4 here) to search whole when they are included again.
    first = set(ids[0:40:4])
    run(excluding(settings, engine, first), k=4, quiet=True)
    # Included again, then killed after one block: some lists may hold them already.
    run_interrupted(monkeypatch, settings, 1)
    assert job_rows(engine)[-1][0] == "failed"
    assert any(first & set(neighbours) for neighbours, _ in stored_lists(engine).values())
    # Excluded once more before the next run: the set is as before the killed run, yet
    # the lists the killed run merged them into must not keep them.
    counts = run(excluding(settings, engine, first), k=4, quiet=True)
    lists = stored_lists(engine)
    assert lists == brute_force(engine, 4, first)
    assert_left_out(lists, first)
    assert flagged(engine) == 0 and counts["exclusions"]["excluded"] == len(first)


def test_a_killed_full_run_resumes_with_the_exclusions_it_started_with(grouping_db,
                                                                       monkeypatch):
    engine, settings = grouping_db
    rng = np.random.default_rng(9)
    ids = add_images(engine, embed(rng.integers(0, 4, size=(30, 4)).astype(np.float32)))
    excluded = {ids[0], ids[29]}
    current = excluding(settings, engine, excluded)
    run_interrupted(monkeypatch, current, 2)
    assert job_rows(engine)[-1][1]["spaces"]["pool3"]["mode"] == "full"
    counts = run(current, k=4, quiet=True)
    assert counts["mode"] == "resume"
    assert stored_lists(engine) == brute_force(engine, 4, excluded)


@hypothesis_settings(max_examples=8, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])
@given(initial=st.lists(small_vector, min_size=6, max_size=12), k=st.integers(1, 4),
       steps=steps)
def test_the_learned_space_leaves_them_out_too_and_is_not_relearned(grouping_db,
                                                                    few_to_learn, initial,
                                                                    k, steps):
    assume(len({tuple(vector) for vector in initial}) > 2)
    engine, settings = grouping_db
    clear(engine)
    ids = add_images(engine, embed(np.array(initial, dtype=np.float32)))
    excluded = {ids[0]}
    current = excluding(settings, engine, excluded)
    state = run_job(current, k=k, quiet=True)["spaces"][WHITENED]
    assert state["mode"] == "full"
    learned, _ = stored_whitening(engine)
    # Learned from the images not excluded only.
    assert learned.learned_from == len(ids) - 1
    for step in steps:
        by_path = apply(engine, ids, excluded, step)
        current = excluding(settings, engine, excluded, by_path)
        run_job(current, k=k, quiet=True)
        projection, _ = stored_whitening(engine)
        assert projection.learned_at == learned.learned_at  # not learned again
        lists = stored_lists(engine, WHITENED)
        assert lists == brute_force(engine, k, excluded, projection.apply)
        assert_left_out(lists, excluded)


def test_patterns_by_name_and_path_and_from_a_file(grouping_db, tmp_path):
    engine, settings = grouping_db
    wanted = ("scans/no_image.jpg", "scans/a/no_image.jpg", "charts/colour.jpg",
              "charts/sub/grey.jpg", "photos/rose.jpg", "photos/no_image_2.jpg")
    names = dict(zip(add_images(engine, embed(np.ones((6, 3), np.float32))), wanted))
    with engine.begin() as connection:
        for image_id, path in names.items():
            connection.execute(update(Image).where(Image.id == image_id).values(
                path=path, file_name=path.rsplit("/", 1)[1]))
    listed = tmp_path / "exclude.txt"
    listed.write_text("# colour charts\ncharts/*   # every chart, in subfolders too\n\n"
                      "./photos/no_image_?.jpg\n")
    current = settings.replace(exclude_patterns=("no_image.jpg",), exclude_file=listed)
    with engine.connect() as connection:
        found = exclusions.excluded_ids(connection, current)
    by_path = {names[i]: why for i, why in found.items()}
    assert by_path == {"scans/no_image.jpg": "pattern no_image.jpg",
                       "scans/a/no_image.jpg": "pattern no_image.jpg",
                       "charts/colour.jpg": "pattern charts/*",
                       "charts/sub/grey.jpg": "pattern charts/*",
                       "photos/no_image_2.jpg": "pattern photos/no_image_?.jpg"}
    # Case-sensitive, and a name pattern does not match a folder.
    assert not exclusions.Patterns(("NO_IMAGE.jpg", "scans")).match("scans/no_image.jpg")


def test_an_unreadable_exclude_file_stops_the_run_before_anything_changes(grouping_db,
                                                                          tmp_path):
    engine, settings = grouping_db
    add_images(engine, embed(np.eye(3, dtype=np.float32)))
    with pytest.raises(JobError, match="EXCLUDE_FILE .*missing.txt"):
        run_job(settings.replace(exclude_file=tmp_path / "missing.txt"), quiet=True)
    assert stored_lists(engine) == {} and flagged(engine) == 3


def test_a_dry_run_tells_the_change_and_changes_nothing(grouping_db):
    engine, settings = grouping_db
    ids = add_images(engine, embed(np.eye(4, dtype=np.float32)))
    run(settings, k=1, quiet=True)
    before = stored_lists(engine)
    counts = run(excluding(settings, engine, {ids[1]}), k=1, dry_run=True)
    assert counts["exclusions"] == {"excluded": 1, "newly_excluded": 1, "included_again": 0}
    # All at one distance: only the first image's list, [ids[1]], holds it.
    assert counts["images"] == 3 and counts["mode"] == "incremental"
    assert counts["lists_full"] == 1
    assert stored_lists(engine) == before and flagged(engine) == 0
    with engine.connect() as connection:
        assert stored_exclusions.stored(connection) == {}
