"""The grouping job: bring every image's top-k neighbour list up to date.

compute_block(grouping, block_ids) is the partition seam (DESIGN, "Scaling past one
machine"): it computes a block of query rows' lists from the vectors (and, for merges,
their stored lists) with no global state; the caller writes them with
db.neighbour_store.write_lists. prepare() searches the new images once beforehand: the
distance blocks of new images against all give both their own lists and the lists they
enter. A full run on one machine takes ExactIndex.search_all instead, which halves the
products by symmetry but ties the blocks together.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import inspect
from sqlalchemy.engine import Engine, make_url

from batch import Progress
from db import neighbour_store as store
from db.neighbour_store import ListChanges
from db.engine import make_engine, upgrade
from db.feature_store import other_models
from db.jobs import finish_job, start_job
from db.locks import run_lock
from db.models import Image, ImageFeatures, ImageNeighbour, Job
from db.vectors import DIMENSIONS, MODEL_NAME
from grouping.engine import ExactIndex
from grouping.plan import ALL, Plan, make_plan
from grouping.vector_cache import VectorCache
from settings import Settings

log = logging.getLogger(__name__)

BLOCK_ROWS = 2048  # lists per computed block and per write transaction
MERGES_PER_BLOCK = 8
CACHE_TOKEN = "vector_cache"  # the counts' entry naming the vector cache a run left


@dataclass
class Entering:
    """New images that enter other lists: entry i enters list owners[i]. Sorted by owner,
    then in list order; at most k per owner. lengths: each owner's stored list length."""

    owners: np.ndarray
    neighbour_ids: np.ndarray
    distances: np.ndarray
    lengths: dict

    def of(self, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (owners, neighbour ids, distances) of the entries entering these lists
        (ascending ids): a slice of the sorted entries, then the ones among it."""
        part = slice(np.searchsorted(self.owners, owners[0]),
                     np.searchsorted(self.owners, owners[-1], side="right"))
        take = np.isin(self.owners[part], owners)
        return (self.owners[part][take], self.neighbour_ids[part][take],
                self.distances[part][take])


@dataclass
class Grouping:
    """What computing a block of lists needs; the same on one machine or on a worker."""

    engine: Engine
    ids: np.ndarray           # all 'ok' images, ascending
    vectors: np.ndarray
    index: ExactIndex         # over all of them
    full_ids: np.ndarray      # lists recomputed whole
    k: int
    memory_bytes: int
    new_lists: dict           # image id: (ids, distances) of lists already computed
    entering: Entering        # new images entering the other lists


def prepare(engine: Engine, ids: np.ndarray, vectors: np.ndarray, plan: Plan,
            memory_bytes: int) -> Grouping:
    """Search the new images against all: their own lists and, from the same distance
    blocks, the lists they enter (one product per pair, not one per direction)."""
    k, index = plan.k, ExactIndex(vectors, ids)
    if plan.mode == "full":  # search_all computes every list; nothing to merge
        return Grouping(engine, ids, vectors, index, plan.full_ids, k, memory_bytes, {},
                        Entering(*np.empty((3, 0), dtype=np.int64), {}))
    log.info("searching %d new images against all %d", len(plan.new_ids), len(ids))
    merge_rows = np.searchsorted(ids, plan.merge_ids)
    length, last_distance, last_id = store.load_list_ends(engine, plan.merge_ids)
    # A new image farther than a list's last entry cannot enter it, and every new image
    # enters a list that is not full; the engine returns every pair within the bound
    # (ties with the last distance too, decided below by neighbour id).
    column_bounds = np.full(len(ids), -np.inf)
    column_bounds[merge_rows] = np.where(length < k, np.inf, last_distance * last_distance)
    new_rows = np.searchsorted(ids, plan.new_ids)
    new_ids, new_distances, (columns, rows, distances) = index.search(
        vectors[new_rows], plan.new_ids, k, memory_bytes, column_bounds=column_bounds)
    owners, neighbours = ids[columns], plan.new_ids[rows]
    at = np.searchsorted(plan.merge_ids, owners)
    last_d, last_n, full = last_distance[at], last_id[at], length[at] >= k
    enters = ~full | (distances < last_d) | ((distances == last_d) & (neighbours < last_n))
    owners, neighbours, distances = owners[enters], neighbours[enters], distances[enters]
    order = np.lexsort((neighbours, distances, owners))
    owners, neighbours, distances = owners[order], neighbours[order], distances[order]
    first = np.searchsorted(owners, owners)
    keep = np.arange(len(owners)) - first < k
    owners = owners[keep]
    lists = np.unique(owners)
    lengths = dict(zip(lists.tolist(), length[np.searchsorted(plan.merge_ids, lists)].tolist()))
    return Grouping(engine, ids, vectors, index, plan.full_ids, k, memory_bytes,
                    dict(zip(plan.new_ids.tolist(), zip(new_ids, new_distances))),
                    Entering(owners, neighbours[keep], distances[keep], lengths))


def compute_block(grouping: Grouping, block_ids: np.ndarray) -> ListChanges:
    """Return the changes this run makes to the lists of block_ids (ascending)."""
    g = grouping
    is_full = np.isin(block_ids, g.full_ids)
    full_ids, merge_ids = block_ids[is_full], block_ids[~is_full]
    found_ids = np.full((len(full_ids), g.k), -1, dtype=np.int64)
    found_distances = np.full((len(full_ids), g.k), np.inf)
    known = np.array([i in g.new_lists for i in full_ids.tolist()], dtype=bool)
    for row in np.flatnonzero(known):
        found_ids[row], found_distances[row] = g.new_lists[int(full_ids[row])]
    search = full_ids[~known]
    found_ids[~known], found_distances[~known] = g.index.search(
        g.vectors[np.searchsorted(g.ids, search)], search, g.k, g.memory_bytes)
    changes = ListChanges.replacing(full_ids, found_ids, found_distances)
    if len(merge_ids):
        merged = _merge(g, *g.entering.of(merge_ids))
        changes = ListChanges(changes.replaced, merged.removed, changes.added + merged.added,
                              changes.ends + merged.ends)
    return changes


def _merge(g: Grouping, owners, neighbours, distances) -> ListChanges:
    """Return the changes to lists that new images enter: neighbours[i] at distances[i]
    enters list owners[i] (sorted by owner, then in list order)."""
    if not len(owners):
        return ListChanges([], [], [], [])
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    lists = owners[starts]
    entering = np.diff(np.r_[starts, len(owners)])
    length = np.array([g.entering.lengths[i] for i in lists.tolist()], dtype=np.int64)
    # Each entering entry pushes at most one old entry out, and those leave from the
    # end of the list; one entry more is read, so that the new last entry is known
    # even where every old entry read is pushed out.
    tail = np.minimum(length, entering + 1)
    old_ids, old_distances = store.load_tails(g.engine, lists, tail)
    new_ids = np.full((len(lists), int(entering.max())), -1, dtype=np.int64)
    new_distances = np.full(new_ids.shape, np.inf)
    row = np.repeat(np.arange(len(lists)), entering)
    position = np.arange(len(owners)) - np.repeat(starts, entering)
    new_ids[row, position], new_distances[row, position] = neighbours, distances
    # The tail and the new entries side by side, each row sorted by (distance, id):
    # the first `slots` stay in the list with the untouched entries before the tail.
    # Old entries past them leave it; new entries within them enter it.
    slots = g.k - (length - tail)
    ids = np.concatenate([old_ids, new_ids], axis=1)
    distances = np.concatenate([old_distances, new_distances], axis=1)
    is_new = np.zeros(ids.shape, dtype=bool)
    is_new[:, old_ids.shape[1]:] = True
    # Padding (−1, inf) sorts after every real entry: no distance is infinite.
    order = np.lexsort((np.where(ids < 0, np.iinfo(np.int64).max, ids), distances), axis=1)
    ids, distances, is_new = (np.take_along_axis(a, order, axis=1)
                              for a in (ids, distances, is_new))
    kept = np.arange(ids.shape[1]) < slots[:, None]
    real = ids >= 0
    owner = np.broadcast_to(lists[:, None], ids.shape)
    removed = real & ~is_new & ~kept
    added = real & is_new & kept
    in_tail = (real & kept).sum(axis=1)
    last = np.arange(len(lists)), in_tail - 1
    return ListChanges(
        [], list(zip(owner[removed].tolist(), ids[removed].tolist())),
        list(zip(owner[added].tolist(), ids[added].tolist(), distances[added].tolist())),
        list(zip(lists.tolist(), (length - tail + in_tail).tolist(),
                 distances[last].tolist(), ids[last].tolist())))


def run(settings: Settings, full: bool = False, k: int | None = None,
        dry_run: bool = False, quiet: bool = False, block_rows: int = BLOCK_ROWS) -> dict:
    """Run the grouping job and return its counts."""
    k = settings.neighbours_k if k is None else k
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if dry_run:
        return _dry_run(settings.database_url, k, full)
    engine = make_engine(settings.database_url)
    try:
        # Raises LockHeld while another run works on this database.
        with run_lock(engine, "grouping"):
            upgrade(engine)
            waiting = _waiting_for_features(engine)
            if waiting:
                job_id = start_job(engine, "grouping")
                finish_job(engine, job_id, "completed", waiting)
                return waiting
            return _run(engine, settings, k, full, quiet, block_rows)
    finally:
        engine.dispose()


def _waiting_for_features(engine) -> dict | None:
    """Return the counts of a run that must wait for the feature job, or None.

    Vectors of two models are not comparable: while the feature job recomputes the
    vectors of an earlier model (db.vectors.OUTDATED_MODELS), the lists stay as they
    are, every one made from vectors of one model, until all are recomputed.
    """
    outdated = sum(other_models(engine, MODEL_NAME).values())
    if not outdated:
        return None
    return {"outdated_vectors": outdated,
            "note": f"{outdated} images still have a vector of an earlier version; the "
                    "lists stay as they are until create_image_features.py has "
                    "recomputed them all"}


def _dry_run(database_url: str, k: int, full: bool) -> dict:
    """Return the counts of what a run would do, without writing to the database."""
    # No upgrade() here: migrations, even creating the tables, are writes.
    nothing = {"mode": "full", "k": k, "lists_full": 0, "lists_checked": 0,
               "new_images": 0, "changed_images": 0, "dry_run": True}
    url = make_url(database_url)
    database = url.database or ":memory:"
    if url.get_backend_name() == "sqlite" and (database == ":memory:"
                                               or not Path(database).exists()):
        # Opening a missing SQLite file, even read-only, would fail or create it.
        return {**nothing, "note": f"no database file {database} yet: nothing to group"}
    engine = make_engine(database_url, read_only=True)
    try:
        tables = {model.__tablename__ for model in (Image, ImageFeatures, ImageNeighbour,
                                                    Job)}
        if not tables <= set(inspect(engine).get_table_names()):
            return {**nothing, "note": "the database has no image tables yet: nothing "
                                       "to group (a run would create them)"}
        waiting = _waiting_for_features(engine)
        if waiting:
            return {**nothing, **waiting}
        plan = make_plan(engine, store.load_ok_ids(engine), k, full)
        return {**plan.counts(), "dry_run": True}
    finally:
        engine.dispose()


def _run(engine, settings, k, full, quiet, block_rows) -> dict:
    started = time.monotonic()
    job_id = start_job(engine, "grouping")
    counts: dict = {"k": k}
    try:
        # The flags are read before the vectors: an image the feature job commits while
        # the vectors load keeps its flag (its updated_at moves) for the next run, instead
        # of having it cleared without its vector having been seen.
        changed = store.load_changed(engine)
        # Not on SQLite: there the vectors are read from a local file already, about as
        # fast as from the copy (bench/results/grouping.md, Run H), which would only
        # double the disk space they take.
        cache = (VectorCache(settings.vector_cache, settings.database_url)
                 if settings.vector_cache and engine.dialect.name != "sqlite" else None)
        ids, vectors, fetched_ids = _load_vectors(engine, cache, changed, job_id, full)
        log.info("loaded %d vectors (%d from the database) in %.1f s", len(ids),
                 len(fetched_ids), time.monotonic() - started)
        plan = make_plan(engine, ids, k, full, changed)
        counts = {**plan.counts(), "images": len(ids), "valid_through": plan.valid_through,
                  "vectors_from_database": len(fetched_ids), "lists_written": 0,
                  "rows_written": 0}
        store.set_job_counts(engine, job_id, counts)
        log.info("%s run: %d lists to recompute, %d to check for %d new images", plan.mode,
                 len(plan.full_ids), len(plan.merge_ids), len(plan.new_ids))
        if plan.mode == "full":
            # A full run needs no flag: it recomputes every list from the vectors just
            # read. Cleared now (after valid_through = NONE is recorded), a kill leaves
            # flagged only what changed since, and the next run resumes where this one
            # stopped instead of redoing every flagged image's list.
            counts["flags_cleared"] = store.clear_needs_grouping(engine, plan.changed)
        counts["lists_deleted"] = store.delete_lists_of_unavailable(engine)
        _compute_and_write(engine, settings, plan, ids, vectors, counts, job_id, quiet,
                           block_rows)
        if plan.mode != "full":
            counts["flags_cleared"] = store.clear_needs_grouping(engine, plan.changed)
        counts["valid_through"] = ALL
        if cache is not None:
            _save_cache(cache, ids, vectors, fetched_ids, counts)
        counts["seconds"] = round(time.monotonic() - started, 3)
        finish_job(engine, job_id, "completed", counts)
        return counts
    except BaseException as error:  # KeyboardInterrupt too: the row must not say running
        counts["seconds"] = round(time.monotonic() - started, 3)
        finish_job(engine, job_id, "failed", counts,
                   message=f"{type(error).__name__}: {error}"[:1000])
        raise


def _load_vectors(engine, cache: VectorCache | None, changed, job_id: int, full: bool):
    """Return (ids, vectors) of every 'ok' image and the ids among them whose vectors
    were read from the database: all of them, unless the cache is current."""
    token = None
    for outcome, counts in store.recent_grouping_jobs(engine, 1, before=job_id):
        if outcome == "completed":
            token = (counts or {}).get(CACHE_TOKEN)
    # A full run reads everything from the database: it is also the way to start afresh.
    if cache is None or full or not cache.open(token):
        ids, vectors = store.load_vectors(engine)
        return ids, vectors, ids
    ok_ids = store.load_ok_ids(engine)
    unflagged = ok_ids[~np.isin(ok_ids, [c.id for c in changed])]
    segment_of, row_of = cache.locate(unflagged)
    held = segment_of >= 0
    fetched_ids, fetched_vectors = store.load_vectors(
        engine, np.setdiff1d(ok_ids, unflagged[held]))
    # An image that changed since `changed` was read keeps its flag for the next run.
    ids = np.union1d(unflagged[held], fetched_ids)
    vectors = np.empty((len(ids), DIMENSIONS), dtype=np.float32)
    cache.read_into(segment_of[held], row_of[held], vectors,
                    np.searchsorted(ids, unflagged[held]))
    vectors[np.searchsorted(ids, fetched_ids)] = fetched_vectors
    return ids, vectors, fetched_ids


def _save_cache(cache: VectorCache, ids, vectors, fetched_ids, counts) -> None:
    try:
        counts[CACHE_TOKEN] = cache.save(ids, vectors, fetched_ids)
    except OSError as error:  # the lists are written; the next run reads the database
        log.warning("could not save the vector cache in %s: %s", cache.folder, error)


def _compute_and_write(engine, settings, plan: Plan, ids, vectors, counts, job_id, quiet,
                       block_rows):
    if not len(plan.full_ids) and not len(plan.merge_ids):
        return
    grouping = prepare(engine, ids, vectors, plan, settings.grouping_memory_mb << 20)
    # Lists that no new image enters stay as they are: blocks hold only lists to write.
    work = np.union1d(plan.full_ids, grouping.entering.owners)
    progress = Progress(len(work), "lists", quiet)
    computed = 0
    pending: deque = deque()  # (write, its progress counts), oldest first

    def finish_oldest():
        # counts follow the committed writes, so that a failed run records where it
        # stopped and the next one resumes there. Popped only once committed: an
        # interrupted wait leaves the write to be counted below.
        write, progress_counts = pending[0]
        lists, rows = write.result()
        pending.popleft()
        counts.update(valid_through=progress_counts["valid_through"],
                      lists_written=counts["lists_written"] + lists,
                      rows_written=counts["rows_written"] + rows)

    try:
        # Writes go to one background thread, in order, while the next block is
        # computed: the products release the GIL, the database round trips don't need it.
        with ThreadPoolExecutor(1) as writer:
            try:
                previous = None
                for block, changes in _blocks(grouping, plan, work, block_rows):
                    computed += changes.lists()
                    # All lists up to the block's last id are now valid for this run.
                    progress_counts = {**counts, "lists_written": computed,
                                       "valid_through": max(plan.valid_through,
                                                            int(block[-1]))}
                    previous = writer.submit(_write, engine, changes, job_id,
                                             progress_counts, previous)
                    pending.append((previous, progress_counts))
                    while len(pending) > 1:
                        finish_oldest()
                    progress.update(len(block))
                while pending:
                    finish_oldest()
            finally:
                for write, _ in pending:
                    write.cancel()
    finally:
        # The executor has waited for the write under way when the run failed: if it
        # committed, it counts too.
        while pending and _committed(pending[0][0]):
            finish_oldest()
        progress.close()
    counts["lists_merged"] = counts["lists_written"] - len(plan.full_ids)


def _blocks(grouping: Grouping, plan: Plan, work: np.ndarray, block_rows: int):
    """Yield (block ids, lists) in ascending id order."""
    if plan.mode == "full":
        # Every list against every image: each distance block serves twice.
        for start, stop, ids, distances in grouping.index.search_all(
                plan.k, grouping.memory_bytes, block_rows):
            block = grouping.ids[start:stop]
            yield block, ListChanges.replacing(block, ids, distances)
        return
    # At most block_rows lists searched whole per block, as in a full run, and up to
    # MERGES_PER_BLOCK times as many in all: a list merged into costs little, and fewer
    # transactions write the pages they share (index ends, list ends) fewer times.
    searched_before = np.r_[0, np.cumsum(np.isin(work, plan.full_ids))]
    start = 0
    while start < len(work):
        stop = min(len(work), start + MERGES_PER_BLOCK * block_rows, int(np.searchsorted(
            searched_before, searched_before[start] + block_rows, side="right")) - 1)
        block = work[start:stop]
        yield block, compute_block(grouping, block)
        start = stop


def _committed(write) -> bool:
    """Return whether a submitted write has finished without error."""
    return write.done() and not write.cancelled() and write.exception() is None


def _write(engine, changes: ListChanges, job_id, progress_counts,
           previous) -> tuple[int, int]:
    # Not after a failed write: this block's counts would claim the lists before it.
    if previous is not None:
        previous.result()
    rows = store.write_lists(engine, changes, job_id, progress_counts)
    return changes.lists(), rows
