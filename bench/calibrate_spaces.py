"""Calibrate the pages' distance words per space: identical, near-duplicate, very similar,
similar (runtime/distances.py's SCALES), in pool3, the whitened and the augmented space.

The photos and near-duplicate copies are those of bench/calibrate_duplicates.py: the
sample images, Oxford flowers photos and copies of some of them made in memory (rescaled
to 50 %, JPEG quality 20, grayscale). The whitened space is learned from the flowers
originals as the grouping job learns it (WHITENED_DIMENSIONS, WHITENED_SHRINKAGE).
The augmented space (numerics/augmentation.py, AUGMENTED_K, AUGMENTED_ALPHA) depends on
the collection: it is computed over the whitened vectors of all of them together (the
flowers, their copies, the sample images), as in an archive that holds copies, where an
image's copies are its nearest and so its augmented vector's company. For comparison it
is computed once more over the collection without the copies, each copy then augmented
with its nearest in the collection as the search by image treats an upload.
Per space:

- near-duplicate: the largest distance within which at most 1 in 2,000 pairs of
  different photos fall (pool3: this is DUPLICATE_DISTANCE's 8);
- very similar / similar: the largest distance within which at least 70 % / 30 % of the
  pairs of different flowers photos (copies left out) show one species, counted from
  the closest pair on (at least 20 pairs; two random photos show one species 1.2 % of
  the time);
- identical: a thousandth of the near-duplicate distance (the same pixels give 0 up to
  float rounding, ~1e-7).

    .venv/bin/python bench/calibrate_spaces.py [--flowers 1000] [--copies 150] \
        [--vectors /tmp/calibrate-spaces.npz]
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibrate_duplicates import ROOT, SAMPLES, copies, distances, features, sample_files  # noqa: E402
from numerics import augmentation, whitening  # noqa: E402
from numerics.engine import ExactIndex  # noqa: E402
from runtime.settings import load_settings  # noqa: E402

FALSE_SHARE = 1 / 2000
MIN_PAIRS = 20
MEMORY = 256 << 20
PRECISIONS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2)


def vectors_of(args, settings):
    """Return (sample vectors, sample files, flower rows, originals, copies' (index,
    name), copy vectors), computed once and kept in --vectors."""
    files = sample_files()
    with open(args.data / "ground_truth.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    step = max(1, len(rows) // args.flowers)
    chosen = rows[::step][:args.flowers]
    if args.vectors.is_file():
        stored = np.load(args.vectors, allow_pickle=False)
        if len(stored["flowers"]) == len(chosen):
            names = [tuple(x.split(":")) for x in stored["copy_names"]]
            return (stored["samples"], files, chosen, stored["flowers"],
                    [(int(i), n) for i, n in names], stored["copies"])
    from model import load_extractor
    extractor = load_extractor(settings.model_cache)
    samples = features(extractor, [(SAMPLES / p).read_bytes() for p, _, _ in files])
    blobs = [(args.data / row["path"]).read_bytes() for row in chosen]
    copied = [(index, name, blob) for index in range(min(args.copies, len(blobs)))
              for name, blob in copies(blobs[index]).items()]
    vectors = features(extractor, blobs + [blob for _, _, blob in copied])
    flowers, copy_vectors = vectors[:len(blobs)], vectors[len(blobs):]
    names = [(i, n) for i, n, _ in copied]
    np.savez(args.vectors, samples=samples, flowers=flowers, copies=copy_vectors,
             copy_names=np.array([f"{i}:{n}" for i, n in names]))
    return samples, files, chosen, flowers, names, copy_vectors


def augmented(whitened: np.ndarray, stored: int, k: int, alpha: float) -> np.ndarray:
    """Return the augmented vectors of all rows of `whitened`: each of the first `stored`
    (the collection) with its k nearest others among them, as the grouping job does;
    each later one (an upload) with its k nearest in the collection, as the search does."""
    index = ExactIndex(whitened[:stored], np.arange(stored))
    neighbours = np.full((len(whitened), k), -1, dtype=np.int64)
    neighbours[:stored] = augmentation.all_nearest(index, k, MEMORY)
    if len(whitened) > stored:
        neighbours[stored:], _ = index.search(whitened[stored:],
                                              np.arange(stored, len(whitened)), k, MEMORY)
    return augmentation.augment(whitened, neighbours, alpha)


def precision_threshold(d: np.ndarray, same: np.ndarray, share: float) -> float:
    """Return the largest distance within which at least `share` of the pairs are same."""
    order = np.argsort(d)
    hits = np.cumsum(same[order]) / np.arange(1, len(order) + 1)
    ok = np.nonzero((hits >= share) & (np.arange(1, len(order) + 1) >= MIN_PAIRS))[0]
    return float(d[order][ok[-1]]) if len(ok) else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=ROOT.parent / "shared" / "data" / "oxford-flowers102-valtest")
    parser.add_argument("--flowers", type=int, default=1000)
    parser.add_argument("--copies", type=int, default=150)
    parser.add_argument("--vectors", type=Path, default=Path("/tmp/calibrate-spaces.npz"),
                        help="where the computed vectors are kept between runs")
    args = parser.parse_args()
    started = time.perf_counter()
    settings = load_settings()
    samples, files, chosen, flowers, names, copy_vectors = vectors_of(args, settings)
    projection = whitening.learn(flowers.astype(np.float32), settings.whitened_dimensions,
                                 learned_at=datetime(2026, 1, 1),
                                 shrinkage=settings.whitened_shrinkage)
    species = np.array([row["group"] for row in chosen])
    sources = np.array([s for _, s, _ in files])
    kinds = np.array([k for _, _, k in files])
    print(f"{len(flowers)} flowers photos of {len(set(species))} species, "
          f"{len(copy_vectors)} copies, {len(samples)} sample images; whitened: "
          f"{projection.dimensions} dimensions, shrinkage {settings.whitened_shrinkage}")
    whitened = {name: projection.apply(v.astype(np.float32))
                for name, v in (("f", flowers), ("c", copy_vectors), ("s", samples))}
    k, alpha = settings.augmented_k, settings.augmented_alpha
    # Rows: the flowers, the sample images, then the copies.
    together = np.concatenate([whitened["f"], whitened["s"], whitened["c"]])
    split = np.cumsum([len(flowers), len(samples)])
    with_copies = np.split(augmented(together, len(together), k, alpha), split)
    uploads = np.split(augmented(together, split[-1], k, alpha), split)
    print(f"augmented: k = {k}, α = {alpha:g}")
    spaces = {"pool3": (flowers, copy_vectors, samples),
              "whitened": (whitened["f"], whitened["c"], whitened["s"]),
              "augmented": (with_copies[0], with_copies[2], with_copies[1]),
              "augmented, copies not stored": (uploads[0], uploads[2], uploads[1])}
    print("| space | identical | near-duplicate | very similar | similar | copies found "
          "(rescaled, q 20, grayscale) | sample duplicates found | median different |")
    print("|---|---|---|---|---|---|---|---|")
    by_precision = {}
    for space, vectors in spaces.items():
        f, c, s = (v.astype(np.float64) for v in vectors)
        fd, sd = distances(f), distances(s)
        upper_f = np.triu(np.ones_like(fd, dtype=bool), 1)
        upper_s = np.triu(np.ones_like(sd, dtype=bool), 1)
        same_source = sources[:, None] == sources[None, :]
        both = (kinds[:, None] == "duplicate") & (kinds[None, :] == "duplicate")
        different = np.concatenate([fd[upper_f], sd[upper_s & ~same_source]])
        sample_duplicates = sd[upper_s & same_source & both]
        copy_distance = {}
        for row, (index, name) in enumerate(names):
            copy_distance.setdefault(name, []).append(float(np.linalg.norm(c[row] - f[index])))
        ordered = np.sort(different)
        near = float(ordered[max(0, int(FALSE_SHARE * len(ordered)) - 1)])
        same_species = (species[:, None] == species[None, :])[upper_f]
        very = precision_threshold(fd[upper_f], same_species, 0.7)
        similar = precision_threshold(fd[upper_f], same_species, 0.3)
        found = ", ".join(f"{(np.array(v) <= near).mean():.0%}"
                          for v in copy_distance.values())
        print(f"| {space} | {near / 1000:.4g} | {near:.4g} | {very:.4g} | {similar:.4g} | "
              f"{found} | {(sample_duplicates <= near).mean():.0%} | "
              f"{np.median(different):.4g} |")
        np.fill_diagonal(fd, np.inf)
        by_precision[space] = ([precision_threshold(fd[upper_f], same_species, share)
                                for share in PRECISIONS],
                               (species[fd.argmin(axis=1)] == species).mean(),
                               {name: np.median(v) for name, v in copy_distance.items()})
    print("\n| space | " + " | ".join(f"X at {share:.0%} same species" for share in PRECISIONS)
          + " | nearest is of the same species | median copy distance (rescaled, q 20, "
          "grayscale) |")
    print("|---|" + "---|" * (len(PRECISIONS) + 2))
    for space, (thresholds, nearest, medians) in by_precision.items():
        print(f"| {space} | " + " | ".join(f"{x:.4g}" for x in thresholds)
              + f" | {nearest:.1%} | " + ", ".join(f"{m:.4g}" for m in medians.values())
              + " |")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
