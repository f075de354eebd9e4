"""The spaces a grouping run computes lists in, and their vectors for this run.

pool3 is the stored vectors as they are. whitened is their projection, learned once
(numerics/whitening.py) and stored in the spaces table; a run learns it when there is
none yet (or when asked to, or when WHITENED_DIMENSIONS changed), and reuses it
otherwise, so that every run sees the same space. Each space's lists are valid for one
projection only: a run that learns a new one recomputes that space whole.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sqlalchemy.engine import Engine

from db.models import AUGMENTED, POOL3, SPACE_IDS, WHITENED, utcnow
import db.neighbours
from db.spaces import delete_space, overview, save_space, stored_whitening
from numerics import whitening

log = logging.getLogger(__name__)


@dataclass
class SpaceRun:
    """One space as this run computes it."""

    name: str
    vectors: np.ndarray | None  # None: not computed in this run (see note)
    projection: str | None = None  # identifies the projection the lists are valid for
    relearned: bool = False  # a new projection: every list of the space is recomputed
    note: str | None = None
    changed: list | None = None  # the images whose vector changed; None: those flagged
    # Stores the space's own state for the next run (the augmented space's): called
    # before any flag is cleared, once the lists are written or, when every list is
    # recomputed, before they are.
    save_state: Callable[[], None] | None = None


@dataclass
class Whitening:
    """What a run does about the whitened space: keep `stored`, learn a new projection,
    or neither (note says why)."""

    stored: whitening.Projection | None
    learn: bool
    note: str | None = None


def decide(stored: whitening.Projection | None, learned_with: dict, images: int,
           wanted: dict, relearn: bool) -> Whitening:
    """Decide about the whitened space of a collection of `images` images, given the
    settings it was learned with and those wanted now (dimensions, shrinkage)."""
    if stored is not None and not relearn and learned_with == wanted:
        return Whitening(stored, learn=False)
    if images >= whitening.MIN_IMAGES:
        return Whitening(stored, learn=True)
    note = (f"learning it needs at least {whitening.MIN_IMAGES} images with features, "
            f"the collection has {images}")
    # A projection learned before stays in use until there are enough images to learn
    # another.
    return Whitening(stored, learn=False, note=note)


def wanted(settings) -> dict:
    """Return the settings the whitened space is to be learned with."""
    return {"dimensions": settings.whitened_dimensions,
            "shrinkage": settings.whitened_shrinkage}


def names(settings) -> list[str]:
    """Return the spaces a run computes lists in under these settings."""
    if not settings.whitened_dimensions:
        return [POOL3]
    return [POOL3, WHITENED] + ([AUGMENTED] if settings.augmented_k else [])


def prepare(engine: Engine, vectors: np.ndarray, settings,
            relearn: bool = False) -> list[SpaceRun]:
    """Return the spaces of this run: pool3, and whitened unless WHITENED_DIMENSIONS is 0."""
    spaces = [SpaceRun(POOL3, vectors)]
    stored, learned_with = stored_whitening(engine)
    dimensions = settings.whitened_dimensions
    if not dimensions:
        with engine.connect() as connection:
            known = WHITENED in overview(connection)
        if known:
            deleted = db.neighbours.delete_space_lists(engine, SPACE_IDS[WHITENED])
            delete_space(engine, WHITENED)
            log.info("WHITENED_DIMENSIONS is 0: deleted the %d lists of the whitened space",
                     deleted)
        return spaces
    decision = decide(stored, learned_with, len(vectors), wanted(settings), relearn)
    projection = decision.stored
    if decision.learn:
        log.info("learning the whitened space (%d dimensions) from %d images",
                 dimensions, len(vectors))
        try:
            projection = whitening.learn(vectors, dimensions, learned_at=utcnow(),
                                         shrinkage=settings.whitened_shrinkage)
        except ValueError as error:  # vectors all alike: nothing to learn (yet)
            decision = Whitening(stored, learn=False, note=str(error))
    if decision.learn:
        save_space(engine, WHITENED, dimensions=projection.dimensions,
                   projection=projection.to_bytes(), learned_from=projection.learned_from,
                   learned_at=projection.learned_at, note=None,
                   whitened_dimensions=dimensions,
                   whitened_shrinkage=settings.whitened_shrinkage)
    elif projection is None:
        save_space(engine, WHITENED, note=decision.note)
        return spaces + [SpaceRun(WHITENED, None, note=f"not computed: {decision.note}")]
    elif decision.note:
        log.warning("the whitened space is not learned again (%s); the one learned from "
                    "%d images stays", decision.note, projection.learned_from)
    elif len(vectors) >= 2 * projection.learned_from:
        log.info("the collection has grown to %d images since the whitened space was "
                 "learned from %d; group_images.py --relearn may improve it",
                 len(vectors), projection.learned_from)
    return spaces + [SpaceRun(WHITENED, projection.apply(vectors), projection.token,
                              relearned=decision.learn)]

