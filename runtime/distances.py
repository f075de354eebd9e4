"""What a distance means in each space: the pages' words and the near-duplicate default.

Distances of one pair differ by a factor of ten between the spaces (pool3 ~ 8 is a
near-duplicate, whitened ~ 1), so every threshold is per space. The figures come from
`bench/calibrate_spaces.py` over the Oxford flowers photos and copies made of them
(bench/results/duplicates.md says how). A new space slots in by adding its entry to
SCALES; a space without one still shows, under its own name, with bare numbers and
exact copies only as near-duplicates.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    """A space's label on the pages and the largest distance of each word."""

    label: str
    identical: float
    near_duplicate: float  # also the default distance of the near-duplicate groups
    very_similar: float
    similar: float

    def word(self, distance: float) -> str:
        for word, limit in (("identical", self.identical),
                            ("near-duplicate", self.near_duplicate),
                            ("very similar", self.very_similar),
                            ("similar", self.similar)):
            if distance <= limit:
                return word
        return "less similar"


SCALES = {
    "pool3": Scale("Original", identical=0.008, near_duplicate=8.0, very_similar=8.6,
                   similar=10.9),
    "whitened": Scale("Improved", identical=0.001, near_duplicate=1.06, very_similar=1.22,
                      similar=1.30),
    # Close pairs share their nearest here, so the closest different photos, and with
    # them the near-duplicate distance, come at half the whitened distance.
    "augmented": Scale("Refined", identical=0.00055, near_duplicate=0.55, very_similar=1.11,
                       similar=1.30),
}
# An exact copy's distance is 0 up to float rounding (~1e-7) in any space.
UNKNOWN_IDENTICAL = 1e-5


def label(space: str) -> str:
    """Return what the pages call a space."""
    scale = SCALES.get(space)
    return scale.label if scale else space.replace("_", " ").capitalize()


def word(space: str, distance: float) -> str | None:
    """Return the word for a distance in a space, or None for a space without a scale."""
    scale = SCALES.get(space)
    if scale is not None:
        return scale.word(distance)
    return "identical" if distance <= UNKNOWN_IDENTICAL else None


def duplicate_distance(space: str, pool3_setting: float) -> float:
    """Return the default near-duplicate distance of a space: DUPLICATE_DISTANCE for
    pool3, the calibrated one for the others, exact copies only for an unknown one."""
    if space == "pool3":
        return pool3_setting
    scale = SCALES.get(space)
    return scale.near_duplicate if scale else UNKNOWN_IDENTICAL
