"""Precision@1 and @10 of exact Euclidean neighbours by class on the Oxford flowers photos.

Extracts `pool_3` features of every photo listed in ground_truth.csv (path, group,
split), finds each photo's exact nearest neighbours (self excluded) over all of them,
and counts how many are of the same group. Expected for the 2015 Inception v3 pool_3
features: about 0.63 (@1) and 0.39 (@10).

    .venv/bin/python bench/bench_flowers_precision.py \
        [--data ../shared/data/oxford-flowers102-valtest] [--save-features FILE.npz]
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

from model import load_extractor  # noqa: E402
from model.preprocess import load_image  # noqa: E402
from runtime.settings import load_settings  # noqa: E402


def precision_at(vectors: np.ndarray, groups: np.ndarray, ks=(1, 10)) -> dict[int, float]:
    """Return {k: mean fraction of the k nearest neighbours (self excluded) in one's group}."""
    vectors = vectors.astype(np.float64)
    squared = (vectors ** 2).sum(1)
    distances = squared[:, None] + squared[None, :] - 2 * vectors @ vectors.T
    np.fill_diagonal(distances, np.inf)
    order = np.argsort(distances, axis=1, kind="stable")[:, :max(ks)]
    same = groups[order] == groups[:, None]
    return {k: float(same[:, :k].mean()) for k in ks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=ROOT.parent / "shared" / "data" / "oxford-flowers102-valtest")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--save-features", type=Path)
    args = parser.parse_args()

    with open(args.data / "ground_truth.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    paths = [args.data / row["path"] for row in rows]
    groups = np.array([row["group"] for row in rows])

    started = time.perf_counter()
    extractor = load_extractor(load_settings().model_cache)
    vectors = []
    with ThreadPoolExecutor(2) as pool:
        for start in range(0, len(paths), args.batch):
            chunk = paths[start:start + args.batch]
            images = list(pool.map(lambda p: load_image(p.read_bytes(), 10**9)[0], chunk))
            vectors.append(extractor(np.stack(images)))
            done = start + len(chunk)
            print(f"\r{done}/{len(paths)} images, {done / (time.perf_counter() - started):.1f}"
                  f" img/s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    vectors = np.concatenate(vectors)
    elapsed = time.perf_counter() - started
    if args.save_features:
        np.savez_compressed(args.save_features, vectors=vectors, groups=groups)

    precision = precision_at(vectors, groups)
    print(f"{len(paths)} photos in {len(set(groups))} groups; features in {elapsed:.0f} s "
          f"({len(paths) / elapsed:.1f} img/s, JPEG decoding included)")
    print(f"precision@1  = {precision[1]:.4f}   (expected about 0.63)")
    print(f"precision@10 = {precision[10]:.4f}   (expected about 0.39)")


if __name__ == "__main__":
    main()
