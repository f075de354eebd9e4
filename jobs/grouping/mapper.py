"""The grouping job's computation: a block of lists in, the changes to them out.

Pure functions of arrays and the engine's index: no database, no files. search_new()
searches the new images against all once, which gives both their own lists and the
entries they bring into other lists (one product per pair, not one per direction);
map_block() turns a block of list ids into ListChanges, searching the lists recomputed
whole and merging the entering entries into the tails of the others. A block is the
unit a distributor can hand to a worker (DESIGN, "Scaling past one machine").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from numerics.engine import ExactIndex
from numerics.list_changes import ListChanges


@dataclass
class Entering:
    """New images that enter other lists: entry i enters list owners[i]. Sorted by owner,
    then in list order; at most k per owner. lengths: each owner's stored list length."""

    owners: np.ndarray
    neighbour_ids: np.ndarray
    distances: np.ndarray
    lengths: dict

    @classmethod
    def empty(cls) -> "Entering":
        return cls(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0),
                   {})

    def of(self, owners: np.ndarray) -> "Entering":
        """Return the entries entering these lists (ascending ids): a slice of the sorted
        entries, then the ones among it."""
        if not len(owners):
            return Entering.empty()
        part = slice(np.searchsorted(self.owners, owners[0]),
                     np.searchsorted(self.owners, owners[-1], side="right"))
        take = np.isin(self.owners[part], owners)
        found = self.owners[part][take]
        return Entering(found, self.neighbour_ids[part][take], self.distances[part][take],
                        {i: self.lengths[i] for i in np.unique(found).tolist()})

    def without(self, owners: np.ndarray) -> "Entering":
        """Return the entries that enter lists other than these."""
        keep = ~np.isin(self.owners, owners)
        return Entering(self.owners[keep], self.neighbour_ids[keep], self.distances[keep],
                        self.lengths)

    def starts(self) -> np.ndarray:
        """Return where each list's entries start."""
        return np.flatnonzero(np.r_[True, self.owners[1:] != self.owners[:-1]]) \
            if len(self.owners) else np.empty(0, dtype=np.int64)

    def lists(self) -> np.ndarray:
        """Return the lists entered, ascending."""
        return self.owners[self.starts()]

    def tail_sizes(self) -> np.ndarray:
        """Return how many of each entered list's last entries a merge needs: each
        entering entry pushes at most one old entry out, from the end of the list, and
        one more tells the new last entry even where every old one read is pushed out."""
        entering = np.diff(np.r_[self.starts(), len(self.owners)])
        length = np.array([self.lengths[i] for i in self.lists().tolist()], dtype=np.int64)
        return np.minimum(length, entering + 1)


@dataclass
class Block:
    """A block of lists to compute: those recomputed whole, and the entries entering the
    others with the last entries of those lists (from the reader)."""

    whole: np.ndarray          # ids, ascending
    merges: Entering
    tail_ids: np.ndarray       # (lists entered, width) padded with −1
    tail_distances: np.ndarray  # the same, padded with inf


def search_new(index: ExactIndex, new_ids: np.ndarray, merge_ids: np.ndarray, ends,
               k: int, memory_bytes: int) -> tuple[dict, Entering]:
    """Return the new images' own lists ({id: (ids, distances)}) and the entries they
    bring into the lists merge_ids, whose stored ends are ends = (length, last distance,
    last neighbour id)."""
    length, last_distance, last_id = ends
    merge_rows = np.searchsorted(index.ids, merge_ids)
    # A new image farther than a list's last entry cannot enter it, and every new image
    # enters a list that is not full; the engine returns every pair within the bound
    # (ties with the last distance too, decided below by neighbour id).
    column_bounds = np.full(len(index), -np.inf)
    column_bounds[merge_rows] = np.where(length < k, np.inf, last_distance * last_distance)
    new_rows = np.searchsorted(index.ids, new_ids)
    found_ids, found_distances, (columns, rows, distances) = index.search(
        index.vectors[new_rows], new_ids, k, memory_bytes, column_bounds=column_bounds)
    owners, neighbours = index.ids[columns], new_ids[rows]
    at = np.searchsorted(merge_ids, owners)
    last_d, last_n, full = last_distance[at], last_id[at], length[at] >= k
    enters = ~full | (distances < last_d) | ((distances == last_d) & (neighbours < last_n))
    owners, neighbours, distances = owners[enters], neighbours[enters], distances[enters]
    order = np.lexsort((neighbours, distances, owners))
    owners, neighbours, distances = owners[order], neighbours[order], distances[order]
    first = np.searchsorted(owners, owners)
    keep = np.arange(len(owners)) - first < k
    owners = owners[keep]
    lists = np.unique(owners)
    lengths = dict(zip(lists.tolist(), length[np.searchsorted(merge_ids, lists)].tolist()))
    return (dict(zip(new_ids.tolist(), zip(found_ids, found_distances))),
            Entering(owners, neighbours[keep], distances[keep], lengths))


def map_block(index: ExactIndex, block: Block, new_lists: dict, k: int,
              memory_bytes: int) -> ListChanges:
    """Return the changes a run makes to the lists of one block."""
    whole = block.whole
    found_ids = np.full((len(whole), k), -1, dtype=np.int64)
    found_distances = np.full((len(whole), k), np.inf)
    known = np.array([i in new_lists for i in whole.tolist()], dtype=bool)
    for row in np.flatnonzero(known):
        found_ids[row], found_distances[row] = new_lists[int(whole[row])]
    search = whole[~known]
    found_ids[~known], found_distances[~known] = index.search(
        index.vectors[np.searchsorted(index.ids, search)], search, k, memory_bytes)
    changes = ListChanges.replacing(whole, found_ids, found_distances)
    if len(block.merges.owners):
        merged = merge(block.merges, block.tail_ids, block.tail_distances, k)
        changes = ListChanges(changes.replaced, merged.removed, changes.added + merged.added,
                              changes.ends + merged.ends)
    return changes


def merge(entering: Entering, old_ids: np.ndarray, old_distances: np.ndarray,
          k: int) -> ListChanges:
    """Return the changes to lists that new images enter, given the last entries of each
    list entered (entering.tail_sizes() of them, in list order, padded)."""
    owners, neighbours, distances = entering.owners, entering.neighbour_ids, \
        entering.distances
    starts = entering.starts()
    lists = owners[starts]
    count = np.diff(np.r_[starts, len(owners)])
    length = np.array([entering.lengths[i] for i in lists.tolist()], dtype=np.int64)
    tail = entering.tail_sizes()
    new_ids = np.full((len(lists), int(count.max())), -1, dtype=np.int64)
    new_distances = np.full(new_ids.shape, np.inf)
    row = np.repeat(np.arange(len(lists)), count)
    position = np.arange(len(owners)) - np.repeat(starts, count)
    new_ids[row, position], new_distances[row, position] = neighbours, distances
    # The tail and the new entries side by side, each row sorted by (distance, id):
    # the first `slots` stay in the list with the untouched entries before the tail.
    # Old entries past them leave it; new entries within them enter it.
    slots = k - (length - tail)
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
