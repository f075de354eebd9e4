"""The grouping job: bring every image's top-k neighbour lists up to date, in every space.

The run only orchestrates: the reader (jobs/grouping/reader.py) brings flags, vectors and
stored lists, jobs/grouping/spaces.py gives each space's vectors, jobs/grouping/plan.py decides
what each space needs, the mapper (jobs/grouping/mapper.py) computes blocks of lists and the
writer (jobs/grouping/writer.py) commits them with the resume point; jobs/grouping/compute.py runs
the mapper in-process or on a Dask cluster. A full space goes through
ExactIndex.search_all instead of blocks of its own: it halves the products by symmetry.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from sqlalchemy import inspect
from sqlalchemy.engine import Engine, make_url

from db.engine import make_engine
from db.features import count_ok_vectors, other_models
import db.images
from db.images import Changed
import db.jobs
from db.jobs import set_vector_cache_left, vector_cache_left
from db.models import AUGMENTED, POOL3, WHITENED
import db.neighbours
from db.spaces import (ResumeState, count_lists, overview, resume_state, save_space,
                       stored_whitening)
from jobs.grouping import augmented, exclusions, moved
from jobs.grouping import spaces as spaces_module
from jobs.grouping.compute import InProcess, OnCluster
from jobs.grouping.mapper import Entering
from jobs.grouping.plan import ALL, Plan, make_plan
from jobs.grouping.reader import Reader
from jobs.grouping.spaces import SpaceRun
from jobs.grouping.writer import Writer
from numerics.vectors import MODEL_NAME
from runtime.distribute import OnDemand, SchedulerError
from runtime.jobrun import JobError, JobRun, connect, one_run_at_a_time, recorded, short_error
from runtime.progress import Progress
from runtime.settings import Settings

log = logging.getLogger(__name__)

BLOCK_ROWS = 2048  # lists per computed block and per write transaction
MERGES_PER_BLOCK = 8


def run(settings: Settings, full: bool = False, k: int | None = None,
        dry_run: bool = False, quiet: bool = False, block_rows: int = BLOCK_ROWS,
        relearn: bool = False, scheduler=None) -> dict:
    """Run the grouping job and return its counts; raise JobError when it cannot run.

    scheduler: where the lists are computed (distribute.open_client; default the
    DASK_SCHEDULER setting, empty for in-process). The database stays on this side.
    """
    k = settings.neighbours_k if k is None else k
    if k < 1:
        raise JobError(f"k must be at least 1, got {k}")
    if dry_run:
        return _dry_run(settings, k, full, relearn)
    engine = connect(settings.database_url)
    try:
        with one_run_at_a_time(engine, "grouping", "group_images.py"), \
                recorded(engine, "grouping") as job:
            waiting = _waiting_for_features(engine)
            if waiting:
                job.counts = waiting
                return waiting
            return _run(engine, settings, job, k, full, quiet, block_rows, relearn,
                        settings.dask_scheduler if scheduler is None else scheduler)
    except (ValueError, MemoryError) as error:  # vectors the engine cannot take, memory
        raise JobError(f"{type(error).__name__}: {short_error(error)}") from error
    finally:
        engine.dispose()


def _waiting_for_features(engine: Engine) -> dict | None:
    """Return the counts of a run that must wait for the feature job, or None.

    Vectors of two models are not comparable: while the feature job recomputes the
    vectors of an earlier model (numerics.vectors.OUTDATED_MODELS), the lists stay as they
    are, every one made from vectors of one model, until all are recomputed.
    """
    outdated = sum(other_models(engine, MODEL_NAME).values())
    if not outdated:
        return None
    return {"outdated_vectors": outdated,
            "note": f"{outdated} images still have a vector of an earlier version; the "
                    "lists stay as they are until create_image_features.py has "
                    "recomputed them all"}


def _run(engine: Engine, settings: Settings, job: JobRun, k: int, full: bool, quiet: bool,
         block_rows: int, relearn: bool, scheduler) -> dict:
    started = time.monotonic()
    db.neighbours.restore_neighbour_index(engine)  # after a full run killed while writing
    reader = Reader(engine, settings.vector_cache, settings.database_url)
    # Before the flags are read: a change of the exclusions flags the images it concerns.
    exclusion = exclusions.sync(engine, settings)
    # The flags are read before the vectors (Reader.vectors says why).
    changed = reader.changed()
    if not (changed or full or relearn) and _up_to_date(engine, settings, k):
        return _nothing_to_do(engine, settings, job, k, exclusion, started)
    ids, vectors, fetched_ids = reader.vectors(changed, job.id, full, exclusion.excluded)
    log.info("loaded %d vectors (%d from the database) in %.1f s", len(ids),
             len(fetched_ids), time.monotonic() - started)
    counts = job.counts
    counts.update(images=len(ids), changed_images=len(changed),
                  new_images=int(np.isin([c.id for c in changed], ids).sum()),
                  vectors_from_database=len(fetched_ids),
                  exclusions=exclusion.counts(), spaces={})
    plans: list[tuple[SpaceRun, Plan]] = []
    memory_bytes = settings.grouping_memory_mb << 20
    spaces = spaces_module.prepare(engine, vectors, settings, relearn)
    spaces += augmented.prepare(engine, ids, spaces, changed, settings, k, full,
                                memory_bytes)
    for space in spaces:
        if space.vectors is None:
            counts["spaces"][space.name] = {"note": space.note}
            continue
        plan = make_plan(reader, space.name, ids, k, full or space.relearned,
                         changed if space.changed is None else space.changed,
                         space.projection, moving=space.changed is not None)
        counts["spaces"][space.name] = {**plan.counts(), "lists_written": 0,
                                        "rows_written": 0}
        log.info("%s: %s run, %d lists to recompute, %d to check for %d new images",
                 space.name, plan.mode, len(plan.full_ids), len(plan.merge_ids),
                 len(plan.new_ids))
        plans.append((space, plan))
    # Recorded before any flag is cleared: a kill leaves each space's true starting point.
    for space, plan in plans:
        save_space(engine, space.name, valid_through=plan.valid_through, k=plan.k,
                   lists_projection=space.projection)
    _save_states(plans, full=True)
    db.jobs.set_job_counts(engine, job.id, counts)
    # A run in which every space is full needs no flag: it recomputes every list from the
    # vectors just read. Cleared now (after valid_through = NONE is recorded), a kill
    # leaves flagged only what changed since, and the next run resumes where this one
    # stopped instead of redoing every flagged image's list.
    all_full = all(plan.mode == "full" for _, plan in plans)
    if all_full:
        counts["flags_cleared"] = db.images.clear_needs_grouping(engine, changed)
    counts["lists_deleted"] = db.neighbours.delete_lists_of_unavailable(engine)
    try:
        with OnDemand(scheduler) as cluster, db.neighbours.neighbour_index_after(
                engine, any(plan.mode == "full" for _, plan in plans)):
            for space, plan in plans:
                _group(engine, reader, job.id, space, plan, ids, counts, memory_bytes,
                       quiet, block_rows, cluster)
    except SchedulerError as error:
        raise JobError(str(error)) from None
    _save_states(plans, full=False)
    if not all_full:
        counts["flags_cleared"] = db.images.clear_needs_grouping(engine, changed)
    for space, _ in plans:
        save_space(engine, space.name, lists=count_lists(engine, space.name))
    token = reader.keep_vectors(ids, vectors, fetched_ids)
    if token:
        set_vector_cache_left(engine, job.id, token)
    counts["seconds"] = round(time.monotonic() - started, 3)
    return counts


def _up_to_date(engine: Engine, settings: Settings, k: int) -> bool:
    """Return whether, with no image flagged, every space this run computes holds
    complete lists of length k made with its current vectors, and no space is to be
    removed: then nothing can change, and no vector need be read."""
    names = spaces_module.names(settings)
    token = None
    if WHITENED in names:
        stored, learned_with = stored_whitening(engine)
        if stored is None or learned_with != spaces_module.wanted(settings):
            return False  # to learn, or too few images to learn from: the full path
        token = stored.token
    projections = {POOL3: None, WHITENED: token, AUGMENTED: token and augmented.token(
        token, settings.augmented_k, settings.augmented_alpha)}
    expected = {name: projections[name] for name in names}
    with engine.connect() as connection:
        if set(overview(connection)) & ({WHITENED, AUGMENTED} - set(names)):
            return False  # a space turned off: its lists are to be deleted
    return all(resume_state(engine, name) == ResumeState(ALL, k, projection)
               for name, projection in expected.items())


def _nothing_to_do(engine: Engine, settings: Settings, job: JobRun, k: int,
                   exclusion, started: float) -> dict:
    """Return the counts of a run that found every list up to date (_up_to_date)."""
    # The vector copy the last run left is as current as it was: handed on to the next.
    token = vector_cache_left(engine, before=job.id)
    if token:
        set_vector_cache_left(engine, job.id, token)
    nothing = {"mode": "incremental", "k": k, "lists_full": 0, "lists_checked": 0,
               "lists_written": 0, "rows_written": 0, "lists_merged": 0}
    with engine.connect() as connection:
        images = count_ok_vectors(connection, exclusion.excluded)
    job.counts.update(
        images=images, changed_images=0, new_images=0,
        vectors_from_database=0, exclusions=exclusion.counts(),
        spaces={name: dict(nothing) for name in spaces_module.names(settings)},
        flags_cleared=0, lists_deleted=0, note="every list is up to date",
        seconds=round(time.monotonic() - started, 3))
    return job.counts


def _save_states(plans: list[tuple[SpaceRun, Plan]], full: bool) -> None:
    """Store the own state of the spaces whose plan is (not) full (SpaceRun.save_state)."""
    for space, plan in plans:
        if space.save_state is not None and (plan.mode == "full") == full:
            space.save_state()


def _group(engine: Engine, reader: Reader, job_id: int, space: SpaceRun, plan: Plan,
           ids: np.ndarray, counts: dict, memory_bytes: int, quiet: bool,
           block_rows: int, cluster: OnDemand) -> None:
    """Bring the lists of one space up to date, as the plan says."""
    state = counts["spaces"][space.name]
    if len(plan.full_ids) or len(plan.merge_ids):
        mapper = (OnCluster(cluster.client(), space.vectors, ids, memory_bytes) if cluster
                  else InProcess(space.vectors, ids, memory_bytes))
        try:
            new_lists, entering = {}, Entering.empty()
            if plan.mode != "full":
                log.info("%s: searching %d new images against all %d", space.name,
                         len(plan.new_ids), len(ids))
                new_lists, entering = mapper.search_new(
                    plan.new_ids, plan.merge_ids,
                    reader.list_ends(space.name, plan.merge_ids), plan.k)
            rebuilt, entering = _rebuild(reader, space.name, plan, entering, state)
            # Lists that no new image enters stay as they are: blocks hold only lists to
            # write.
            work = np.union1d(np.union1d(plan.full_ids, entering.owners),
                              np.array(sorted(rebuilt), dtype=np.int64))
            progress = Progress(len(work), f"{space.name} lists", quiet)
            try:
                with Writer(engine, space.name, job_id, counts, state) as writer:
                    for block, changes in _blocks(mapper, reader, space.name, plan, work,
                                                  new_lists, entering, block_rows):
                        writer.write(moved.combined(changes, rebuilt, block),
                                     max(plan.valid_through, int(block[-1])))
                        progress.update(len(block))
                    writer.close()
            finally:
                progress.close()
        finally:
            mapper.close()
    state["lists_merged"] = state["lists_written"] - len(plan.full_ids)
    save_space(engine, space.name, valid_through=ALL)
    db.jobs.set_job_counts(engine, job_id, counts)


def _rebuild(reader: Reader, space: str, plan: Plan, entering: Entering,
             state: dict) -> tuple[dict, Entering]:
    """Rebuild the plan's lists that hold moved vectors (jobs/grouping/moved.py); those
    that fall short join plan.full_ids. Return the changes of the others, by owner, and
    the entering entries left to merge."""
    if not len(plan.rebuild_ids):
        return {}, entering
    lengths = reader.list_ends(space, plan.rebuild_ids)[0]
    old_ids, old_distances = reader.whole_lists(space, plan.rebuild_ids, lengths)
    rebuilt, short = moved.rebuild(plan.rebuild_ids, lengths, old_ids, old_distances,
                                   entering, plan.new_ids, plan.k)
    plan.full_ids = np.union1d(plan.full_ids, short)
    state.update(lists_rebuilt=len(rebuilt), lists_short=len(short))
    return rebuilt, entering.without(plan.rebuild_ids)


def _blocks(mapper, reader: Reader, space: str, plan: Plan, work: np.ndarray,
            new_lists: dict, entering: Entering, block_rows: int):
    """Yield (block ids, changes to their lists) in ascending id order."""
    if plan.mode == "full":
        yield from mapper.full(plan.k, block_rows)
        return
    yield from mapper.blocks(_merge_blocks(reader, space, plan, work, entering,
                                           block_rows), new_lists, plan.k)


def _merge_blocks(reader: Reader, space: str, plan: Plan, work: np.ndarray,
                  entering: Entering, block_rows: int):
    """Yield (block ids, what the mapper needs for them) of an incremental run."""
    # At most block_rows lists searched whole per block, as in a full run, and up to
    # MERGES_PER_BLOCK times as many in all: a list merged into costs little, and fewer
    # transactions write the pages they share (index ends, list ends) fewer times.
    searched_before = np.r_[0, np.cumsum(np.isin(work, plan.full_ids))]
    start = 0
    while start < len(work):
        stop = min(len(work), start + MERGES_PER_BLOCK * block_rows, int(np.searchsorted(
            searched_before, searched_before[start] + block_rows, side="right")) - 1)
        block = work[start:stop]
        yield block, reader.block(space, block, plan.full_ids, entering)
        start = stop


def _dry_run(settings: Settings, k: int, full: bool, relearn: bool) -> dict:
    """Return the counts of what a run would do, without writing to the database."""
    # No upgrade() here: migrations, even creating the tables, are writes.
    nothing = {"images": 0, "dry_run": True, "spaces": {"pool3": {
        "mode": "full", "k": k, "lists_full": 0, "lists_checked": 0}}}
    url = make_url(settings.database_url)
    database = url.database or ":memory:"
    if url.get_backend_name() == "sqlite" and (database == ":memory:"
                                               or not Path(database).exists()):
        # Opening a missing SQLite file, even read-only, would fail or create it.
        return {**nothing, "note": f"no database file {database} yet: nothing to group"}
    engine = make_engine(settings.database_url, read_only=True)
    try:
        tables = set(inspect(engine).get_table_names())
        if not {"images", "image_features", "image_neighbours", "jobs"} <= tables:
            return {**nothing, "note": "the database has no image tables yet: nothing "
                                       "to group (a run would create them)"}
        if "spaces" not in tables:
            return {**nothing, "note": "the database's tables are of an earlier version: "
                                       "a run brings them up to date first, which a dry "
                                       "run does not, so it cannot plan further"}
        waiting = _waiting_for_features(engine)
        if waiting:
            return {**nothing, **waiting}
        reader = Reader(engine, None, settings.database_url)
        with engine.connect() as connection:
            _, _, exclusion = exclusions.compare(connection, settings)
        ids, changed = reader.ok_ids(exclusion.excluded), reader.changed()
        # The images a run would flag for their change of exclusion.
        flagged = {c.id for c in changed}
        changed += [Changed(i, "", None) for i in
                    exclusion.newly_excluded + exclusion.included_again if i not in flagged]
        counts = {"images": len(ids), "changed_images": len(changed),
                  "exclusions": exclusion.counts(), "spaces": {}, "dry_run": True}
        counts["spaces"]["pool3"] = make_plan(reader, "pool3", ids, k, full,
                                              changed).counts()
        if settings.whitened_dimensions:
            stored, learned_with = stored_whitening(engine)
            decision = spaces_module.decide(stored, learned_with, len(ids),
                                            spaces_module.wanted(settings), relearn)
            if decision.learn or decision.stored is not None:
                projection = None if decision.learn else stored.token
                counts["spaces"][WHITENED] = make_plan(
                    reader, WHITENED, ids, k, full or decision.learn, changed,
                    projection).counts()
            else:
                counts["spaces"][WHITENED] = {"note": f"not computed: {decision.note}"}
            if settings.augmented_k:
                # Which of its lists change depends on the new whitened vectors.
                counts["spaces"][AUGMENTED] = {"note": "planned by the run itself"}
        return counts
    finally:
        engine.dispose()
