"""The augmented space of a run: the whitened vectors augmented by their k nearest.

numerics/augmentation.py defines the vectors. Each image's k nearest in the whitened
space are kept in the augmentation_neighbours table (db/augmentation.py): a run that
computes the space whole finds them all with the engine and stores them before any flag
is cleared; an incremental run recomputes only those that may have changed
(augmentation.stale) and stores them once the space's lists are written, before the
flags are cleared, so a killed run finds the same changes again. The images whose
augmented vector changed (or that left) are the space's changed images: their lists and
the lists that hold them are recomputed, new vectors merged into the others, as in every
space (jobs/grouping/plan.py).
"""
from __future__ import annotations

import logging
from functools import partial

import numpy as np
from sqlalchemy.engine import Engine

import db.augmentation
from db.images import Changed
from db.models import AUGMENTED, SPACE_IDS, WHITENED
import db.neighbours
from db.spaces import delete_space, overview, resume_state, save_space
from jobs.grouping.plan import NONE, starting_point
from jobs.grouping.spaces import SpaceRun
from numerics import augmentation
from numerics.engine import ExactIndex

log = logging.getLogger(__name__)


def token(whitened: str, k: int, alpha: float) -> str:
    """Return what identifies the augmented vectors: the whitening, k and α."""
    return f"{whitened} k={k} alpha={alpha:g}"


def prepare(engine: Engine, ids: np.ndarray, spaces: list[SpaceRun], changed: list[Changed],
            settings, k_lists: int, full: bool, memory_bytes: int) -> list[SpaceRun]:
    """Return the augmented space of this run (a list of one), or none when it is off."""
    k, alpha = settings.augmented_k, settings.augmented_alpha
    whitened = next((space for space in spaces if space.name == WHITENED), None)
    if not k or whitened is None:
        _remove(engine)
        return []
    if whitened.vectors is None:
        note = "the whitened space is not computed"
        save_space(engine, AUGMENTED, note=note)
        return [SpaceRun(AUGMENTED, None, note=f"not computed: {note}")]
    index = ExactIndex(whitened.vectors, ids)
    name = token(whitened.projection, k, alpha)
    fresh = starting_point(resume_state(engine, AUGMENTED), k_lists, full, name) == NONE
    if fresh:
        neighbours, stale, gone = augmentation.all_nearest(index, k, memory_bytes), ids, ()
        log.info("augmented: the %d nearest of all %d images", k, len(ids))
    else:
        stored_ids, stored = db.augmentation.load_all(engine, k)
        stale = augmentation.stale(index, stored_ids, stored,
                                   np.array([c.id for c in changed], dtype=np.int64),
                                   memory_bytes)
        gone = np.setdiff1d(stored_ids, ids)
        neighbours = np.full((len(ids), k), -1, dtype=np.int64)
        kept = np.isin(ids, stored_ids)
        neighbours[kept] = stored[np.searchsorted(stored_ids, ids[kept])]
        neighbours[np.searchsorted(ids, stale)] = augmentation.nearest(
            index, stale, k, memory_bytes)
        log.info("augmented: %d images whose nearest may have changed", len(stale))
    save_space(engine, AUGMENTED, dimensions=whitened.vectors.shape[1], note=None,
               augmented_k=k, augmented_alpha=alpha)
    rows = np.where(neighbours >= 0, np.searchsorted(ids, neighbours), -1)
    vectors = augmentation.augment(whitened.vectors, rows, alpha)
    # The space's changed images: every stale one (its vector changes) and those that
    # left the space, flagged or not.
    left = np.union1d(np.setdiff1d(np.array([c.id for c in changed], dtype=np.int64), ids),
                      gone)
    space_changed = [Changed(int(i), "", None) for i in np.union1d(stale, left).tolist()]
    at = np.searchsorted(ids, stale)
    save = partial(db.augmentation.save, engine, ids if fresh else stale,
                   neighbours if fresh else neighbours[at], replace_all=fresh, gone=gone)
    return [SpaceRun(AUGMENTED, vectors, name, relearned=fresh, changed=space_changed,
                     save_state=save)]


def _remove(engine: Engine) -> None:
    """Delete the augmented space's lists and state, if there are any."""
    with engine.connect() as connection:
        known = AUGMENTED in overview(connection)
    if known:
        deleted = db.neighbours.delete_space_lists(engine, SPACE_IDS[AUGMENTED])
        db.augmentation.delete_all(engine)
        delete_space(engine, AUGMENTED)
        log.info("the augmented space is off: deleted its %d lists", deleted)
