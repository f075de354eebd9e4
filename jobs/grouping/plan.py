"""Deciding which neighbour lists of a space a run recomputes, merges into, or deletes.

The state of a space between runs is described by one number, valid_through: the list of
every 'ok' image with an id at or below it is the exact top k of the vectors as they were
at some moment, and every change since that moment is flagged needs_grouping. Lists
above it are unknown. Incremental runs clear the flags they read when every space is
done; a run whose spaces are all full clears them as it starts, since it reads every
vector anyway. A run records each space's valid_through, k and projection in its row of
the spaces table as it plans, before it clears any flag; it writes a space's lists in
ascending id order and records max(valid_through at its start, last id written) in the
transaction of each write, and ALL once the space is done, so a killed or failed run,
full or not, is taken up where it stopped, and a completed one leaves everything valid.
A space's state holds for one k and, for a learned space, one projection: another of
either starts that space afresh.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from db.images import Changed
from db.spaces import ResumeState

ALL = 2 ** 63 - 1   # valid_through when every list is valid
NONE = 0            # ... when none is (ids start at 1)
# A moving plan (make_plan) that would search or rebuild more than this share of the
# lists runs full instead.
REBUILD_SHARE = 0.5


@dataclass
class Plan:
    space: str
    mode: str                 # full | resume | incremental
    k: int
    valid_through: int
    changed: list[Changed]    # the flagged images this run clears when it completes
    full_ids: np.ndarray      # lists recomputed against every image
    merge_ids: np.ndarray     # lists that the new images may enter
    new_ids: np.ndarray       # 'ok' images among the changed: merged into other lists
    # Lists that hold a new image's former vector (moving plans): rebuilt from their old
    # entries and the new vectors within their last entry (jobs/grouping/moved.py).
    rebuild_ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def counts(self) -> dict:
        return {"mode": self.mode, "k": self.k, "lists_full": len(self.full_ids),
                "lists_checked": len(self.merge_ids)}


def starting_point(state: ResumeState | None, k: int, full: bool,
                   projection: str | None = None) -> int:
    """Return valid_through of a space at the start of a run, from its stored state."""
    if full or state is None:
        return NONE
    if state.k != k or state.projection != projection:
        return NONE  # lists of another length or another space: recompute them all
    return state.valid_through


def make_plan(reader, space: str, ok_ids: np.ndarray, k: int, full: bool,
              changed: list[Changed], projection: str | None = None,
              moving: bool = False) -> Plan:
    """Return what a run over the 'ok' images ok_ids (ascending) has to do in `space`,
    given the flagged images `changed`.

    moving: the vectors of the changed 'ok' images moved a little (the augmented
    space's): the lists that hold them are rebuilt rather than searched whole, and only
    those that held a changed image that is no longer 'ok' are searched whole."""
    valid_through = starting_point(reader.resume_state(space), k, full, projection)
    changed_ids = np.array([c.id for c in changed], dtype=np.int64)
    new_ids = np.intersect1d(changed_ids, ok_ids)
    if valid_through == NONE:
        return Plan(space, "full", k, valid_through, changed, ok_ids, ok_ids[:0], new_ids)
    # A list that holds a changed image lost a neighbour or has a stale distance; the
    # new images' own lists, and every list above valid_through, start from nothing.
    left = np.setdiff1d(changed_ids, new_ids) if moving else changed_ids
    redo = np.union1d(np.array(sorted(reader.lists_containing(space, left)),
                               dtype=np.int64), new_ids)
    redo = np.union1d(redo, ok_ids[ok_ids > valid_through])
    full_ids = np.intersect1d(redo, ok_ids)
    if len(ok_ids) and len(full_ids) == len(ok_ids):
        # Every list changes (every vector was recomputed, say): a full run computes
        # them all in half the products.
        return Plan(space, "full", k, NONE, changed, ok_ids, ok_ids[:0], new_ids)
    merge_ids = np.setdiff1d(ok_ids, full_ids) if len(new_ids) else ok_ids[:0]
    mode = "incremental" if valid_through == ALL else "resume"
    rebuild_ids = (np.setdiff1d(np.intersect1d(np.array(sorted(reader.lists_containing(
        space, new_ids)), dtype=np.int64), ok_ids), full_ids) if moving else ok_ids[:0])
    if moving and len(full_ids) + len(rebuild_ids) > REBUILD_SHARE * len(ok_ids):
        # Moved vectors in most lists: a full run, in half the products and with each
        # list written once, costs less than rebuilding them (bench/results/spaces.md).
        return Plan(space, "full", k, NONE, changed, ok_ids, ok_ids[:0], new_ids)
    return Plan(space, mode, k, valid_through, changed, full_ids, merge_ids, new_ids,
                rebuild_ids)
