"""Long id lists split for IN (...) lists and bounded statements."""
from __future__ import annotations

from itertools import islice
from typing import Iterable, Iterator

IN_LIST = 1000  # values per IN (...) list: well inside every driver's parameter limit


def chunks(values: Iterable, size: int | None = None) -> Iterator[list]:
    """Yield `values` in lists of at most `size` (default IN_LIST), in order."""
    size = size or IN_LIST  # read at each call: the tests make it small
    iterator = iter(values)
    while chunk := list(islice(iterator, size)):
        yield chunk
