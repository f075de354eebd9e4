"""Lists that hold vectors which moved: rebuilt from what they held, not searched whole.

In the augmented space a new image moves the vectors of the few images it comes near,
and each of those is in up to k lists: searching all those lists whole would cost about
a full run. A list whose owner did not move is exact again from its old entries alone:
every image outside it that did not move is still beyond its last entry, so its new
top k is the top k of its entries that did not move and the moved vectors within its
last entry (search_new finds those, as for new images), unless fewer than k of them
are left; only then is it searched whole.
"""
from __future__ import annotations

import numpy as np

from jobs.grouping.mapper import Entering
from numerics.list_changes import ListChanges


def rebuild(owners: np.ndarray, lengths: np.ndarray, old_ids: np.ndarray,
            old_distances: np.ndarray, entering: Entering, moved: np.ndarray,
            k: int) -> tuple[dict[int, ListChanges], np.ndarray]:
    """Return the changes of each rebuilt list, by owner, and the owners whose lists
    fall short (to be searched whole).

    owners (ascending) with their stored lists whole (old_ids, old_distances, padded;
    lengths); entering: the moved vectors within those lists' last entries; moved: the
    ids of the moved vectors (ascending)."""
    changes, short = {}, []
    part = entering.of(owners)
    starts = np.searchsorted(part.owners, owners)
    stops = np.searchsorted(part.owners, owners, side="right")
    for row, owner in enumerate(owners.tolist()):
        length = int(lengths[row])
        ids, distances = old_ids[row, :length], old_distances[row, :length]
        stays = ~np.isin(ids, moved)
        new_ids = part.neighbour_ids[starts[row]:stops[row]]
        new_distances = part.distances[starts[row]:stops[row]]
        all_ids = np.concatenate([ids[stays], new_ids])
        all_distances = np.concatenate([distances[stays], new_distances])
        if (length == k and len(all_ids) < k) or not len(all_ids):
            short.append(owner)
            continue
        order = np.lexsort((all_ids, all_distances))[:k]
        kept_ids, kept_distances = all_ids[order], all_distances[order]
        is_new = order >= stays.sum()
        out = np.setdiff1d(ids, kept_ids[~is_new])  # moved ones, and those pushed out
        changes[owner] = ListChanges(
            [], [(owner, i) for i in out.tolist()],
            [(owner, i, d) for i, d in zip(kept_ids[is_new].tolist(),
                                           kept_distances[is_new].tolist())],
            [(owner, len(kept_ids), float(kept_distances[-1]), int(kept_ids[-1]))])
    return changes, np.array(short, dtype=np.int64)


def combined(changes: ListChanges, rebuilt: dict[int, ListChanges],
             block: np.ndarray) -> ListChanges:
    """Return the block's changes with those of its rebuilt lists."""
    for owner in block.tolist():
        extra = rebuilt.get(owner)
        if extra is not None:
            changes = ListChanges(changes.replaced, changes.removed + extra.removed,
                                  changes.added + extra.added, changes.ends + extra.ends)
    return changes
