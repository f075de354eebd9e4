"""Calibrate DUPLICATE_DISTANCE: pool3 distances of near-duplicates versus different photos.

Near-duplicates are rescaled, recompressed and grayscale copies of one photo: those of
sample_images/ (named in its SOURCES.md) and copies made here
of a sample of the Oxford flowers photos (in memory, never written anywhere). Different
photos: every other pair, among the sample images and among the flowers (different
photos of one species included). Crops and rotations of sample_images/ are neither: the
report gives their distances apart. Prints the largest duplicate distance and the
smallest non-duplicate one, per set, and the threshold half-way between (in the gap).

    .venv/bin/python bench/calibrate_duplicates.py [--flowers 300] [--copies 100] \
        [--data ../shared/data/oxford-flowers102-valtest]
"""
from __future__ import annotations

import argparse
import csv
import io
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent

from model import load_extractor  # noqa: E402
from model.preprocess import load_image  # noqa: E402
from runtime.settings import load_settings  # noqa: E402

SAMPLES = ROOT / "sample_images"
# Edits of sample_images/ that keep the whole picture: near-duplicates of their source.
DUPLICATE_EDIT = re.compile(r"original|rescaled|recompressed|grayscale|reference copy")
EDITED = re.compile(r"crop|rotated")


def sample_files() -> list[tuple[str, str, str]]:
    """Return (path, source, kind) of every sample image: kind duplicate or edited."""
    rows = []
    for line in (SAMPLES / "SOURCES.md").read_text().splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].endswith(".jpg"):
            path, source, edit = cells
            kind = "edited" if EDITED.search(edit) else (
                "duplicate" if DUPLICATE_EDIT.search(edit) else "unknown")
            rows.append((path, source, kind))
    return rows


def copies(data: bytes) -> dict[str, bytes]:
    """Return the near-duplicate copies of one JPEG: rescaled, recompressed, grayscale."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    out = {}
    for name, edited, quality in (
            ("rescaled_50", image.resize((image.width // 2, image.height // 2),
                                         Image.LANCZOS), 90),
            ("quality_20", image, 20),
            ("grayscale", image.convert("L"), 90)):
        buffer = io.BytesIO()
        edited.save(buffer, "JPEG", quality=quality)
        out[name] = buffer.getvalue()
    return out


def features(extractor, blobs: list[bytes], batch: int = 16) -> np.ndarray:
    vectors = []
    for start in range(0, len(blobs), batch):
        images = [load_image(blob, 10 ** 9)[0] for blob in blobs[start:start + batch]]
        vectors.append(extractor(np.stack(images)))
        print(f"\r{start + len(images)}/{len(blobs)} images", end="", file=sys.stderr,
              flush=True)
    print(file=sys.stderr)
    return np.concatenate(vectors).astype(np.float64)


def distances(vectors: np.ndarray) -> np.ndarray:
    squared = (vectors ** 2).sum(1)
    return np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * vectors @ vectors.T,
                              0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=ROOT.parent / "shared" / "data" / "oxford-flowers102-valtest")
    parser.add_argument("--flowers", type=int, default=300,
                        help="flower photos compared (the first of ground_truth.csv, "
                             "spread over the species)")
    parser.add_argument("--copies", type=int, default=100,
                        help="of those, how many get near-duplicate copies")
    args = parser.parse_args()
    started = time.perf_counter()
    extractor = load_extractor(load_settings().model_cache)

    files = sample_files()
    vectors = features(extractor, [(SAMPLES / p).read_bytes() for p, _, _ in files])
    d = distances(vectors)
    sources = np.array([s for _, s, _ in files])
    kinds = np.array([k for _, _, k in files])
    upper = np.triu(np.ones_like(d, dtype=bool), 1)
    same = sources[:, None] == sources[None, :]
    both = (kinds[:, None] == "duplicate") & (kinds[None, :] == "duplicate")
    print("## sample_images/")
    duplicate = d[upper & same & both]
    different = d[upper & ~same]
    edited = d[upper & same & ~both]
    print(f"near-duplicate pairs: {duplicate.size}, largest distance {duplicate.max():.3f}")
    for i, j in zip(*np.nonzero(upper & same & both)):
        print(f"  {d[i, j]:7.3f}  {files[i][0]}  ~  {files[j][0]}")
    print(f"different photos: {different.size} pairs, smallest distance "
          f"{different.min():.3f}")
    print(f"crops and rotations (neither): {edited.size} pairs, "
          f"{edited.min():.3f} to {edited.max():.3f}")

    with open(args.data / "ground_truth.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    # Spread over the species: every n-th row of the list, which is sorted by species.
    step = max(1, len(rows) // args.flowers)
    chosen = rows[::step][:args.flowers]
    blobs = [(args.data / row["path"]).read_bytes() for row in chosen]
    copied = []
    for index in range(min(args.copies, len(blobs))):  # in memory: nothing is written
        for name, blob in copies(blobs[index]).items():
            copied.append((index, name, blob))
    flower_vectors = features(extractor, blobs + [blob for _, _, blob in copied])
    originals = flower_vectors[:len(blobs)]
    od = distances(originals)
    upper = np.triu(np.ones_like(od, dtype=bool), 1)
    species = np.array([row["group"] for row in chosen])
    same_species = species[:, None] == species[None, :]
    copy_distances = {}
    for row, (index, name, _) in enumerate(copied, len(blobs)):
        copy_distances.setdefault(name, []).append(
            float(np.linalg.norm(flower_vectors[row] - originals[index])))
    print(f"## flowers: {len(blobs)} photos of {len(set(species))} species, copies of "
          f"{min(args.copies, len(blobs))}")
    largest = 0.0
    for name, values in copy_distances.items():
        values = np.array(values)
        largest = max(largest, values.max())
        print(f"{name}: median {np.median(values):.3f}, 99th percentile "
              f"{np.percentile(values, 99):.3f}, largest {values.max():.3f}")
    print(f"different photos, same species: smallest {od[upper & same_species].min():.3f}, "
          f"1st percentile {np.percentile(od[upper & same_species], 1):.3f}")
    print(f"different photos, other species: smallest "
          f"{od[upper & ~same_species].min():.3f}")
    closest = np.unravel_index(np.where(upper, od, np.inf).argmin(), od.shape)
    print(f"closest different pair: {chosen[closest[0]]['path']}  ~  "
          f"{chosen[closest[1]]['path']}")

    most_duplicate = max(duplicate.max(), largest)
    least_different = min(different.min(), od[upper].min())
    print("## all")
    print(f"largest near-duplicate distance {most_duplicate:.3f}, smallest different-photo "
          f"distance {least_different:.3f}; half-way: "
          f"{(most_duplicate + least_different) / 2:.3f}")
    print("## thresholds: near-duplicate pairs found, different-photo pairs taken for them")
    different_all = np.concatenate([different, od[upper]])
    kinds_found = {"sample": duplicate, **{f"flowers {k}": np.array(v)
                                           for k, v in copy_distances.items()}}
    print("| X | " + " | ".join(kinds_found) + " | different pairs within X (of "
          f"{different_all.size}) |")
    print("|---" * (len(kinds_found) + 2) + "|")
    for x in (4, 6, 8, 9, 10, 12, 14, 16):
        print(f"| {x} | " + " | ".join(f"{(v <= x).mean():.0%}" for v in kinds_found.values())
              + f" | {(different_all <= x).sum()} |")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
