"""Measure the feature extractor alone: images/s and GFLOP/s at batch 1 and batch 32.

The baseline is this machine's float32 matrix-product rate, measured in the same run
(numpy `a @ b`, 4096x2048 by 2048x8192). Rounds interleave all three measurements, so
that load from other processes hits them alike; each is reported as best and median
over the rounds (the best is the least disturbed).

    .venv/bin/python bench/bench_extractor.py [--rounds 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

from model import load_extractor  # noqa: E402
from model.preprocess import load_image  # noqa: E402
from runtime.settings import load_settings  # noqa: E402

GFLOP_PER_IMAGE = 11.5  # Inception v3 at 299x299, multiply and add counted apart
MATMUL_GFLOP = 2 * 4096 * 2048 * 8192 / 1e9


def matmul_rate(a, b) -> float:
    """Return GFLOP/s of one float32 a @ b."""
    started = time.perf_counter()
    a @ b
    return MATMUL_GFLOP / (time.perf_counter() - started)


def extractor_rate(extractor, inputs, batch: int, images: int) -> float:
    """Return images/s extracting `images` images in batches of `batch`."""
    started = time.perf_counter()
    for start in range(0, images, batch):
        extractor(inputs[start % len(inputs):start % len(inputs) + batch])
    return images / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    extractor = load_extractor(load_settings().model_cache)
    photos = sorted((ROOT / "tests" / "fixtures" / "golden").glob("*.jpg"))
    one_each = np.stack([load_image(p.read_bytes(), 10**8)[0] for p in photos])
    inputs = np.concatenate([one_each] * (64 // len(one_each) + 1))[:64]
    rng = np.random.default_rng(0)
    a = rng.random((4096, 2048), dtype=np.float32)
    b = rng.random((2048, 8192), dtype=np.float32)

    load_before = os.getloadavg()[0]
    # Warm-up: traces, oneDNN primitive caches, BLAS threads.
    extractor(inputs[:1]), extractor(inputs[:32]), matmul_rate(a, b)
    results = {"numpy matmul": [], "batch 1": [], "batch 32": []}
    for _ in range(args.rounds):
        results["numpy matmul"].append(matmul_rate(a, b))
        results["batch 1"].append(extractor_rate(extractor, inputs, 1, 8) * GFLOP_PER_IMAGE)
        results["batch 32"].append(extractor_rate(extractor, inputs, 32, 64) * GFLOP_PER_IMAGE)

    print(f"cpu cores: {os.cpu_count()}, rounds: {args.rounds}, "
          f"1-min load average before/after: {load_before:.2f}/{os.getloadavg()[0]:.2f}")
    base_best = max(results["numpy matmul"])
    base_median = statistics.median(results["numpy matmul"])
    print(f"{'':14} {'img/s best':>10} {'GFLOP/s best':>12} {'median':>8} "
          f"{'ratio best':>10} {'ratio median':>12}")
    for name, rates in results.items():
        best, median = max(rates), statistics.median(rates)
        images = "" if name == "numpy matmul" else f"{best / GFLOP_PER_IMAGE:.2f}"
        print(f"{name:14} {images:>10} {best:12.1f} {median:8.1f} {best / base_best:10.2f} "
              f"{median / base_median:12.2f}")
    print(f"batch 32 vs batch 1 (best): "
          f"{max(results['batch 32']) / max(results['batch 1']):.2f}x")


if __name__ == "__main__":
    main()
