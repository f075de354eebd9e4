#!/usr/bin/env python3
"""The original, the learned and the augmented space on real photos: both jobs and
evaluate.py, as run.

    .venv/bin/python bench/bench_spaces.py [--data ../shared/data/oxford-flowers102-valtest]
        [--work DIR] [--dimensions 64,128,256,384,512] [--shrinkage 0,0.25,0.5,1]
        [--augmented-k 1,2,3,5,10] [--alpha 1,3] [--subset 300] [--seed 0]

Runs create_image_features.py over the photos into a SQLite database in DIR (kept, so a
second run skips the features), then for every WHITENED_DIMENSIONS and
WHITENED_SHRINKAGE group_images.py (which learns the space again when they change) and
evaluate.py on the set's ground_truth.csv, and prints pool3 beside whitened; then, at the
default whitening, the augmented space for every AUGMENTED_K and AUGMENTED_ALPHA. Then
the same, at the defaults and without shrinkage, for a random subset of --subset photos
copied to DIR: a small collection. The photos are read from ../shared (never copied
into the project); everything written goes to DIR (default: a new temporary folder).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEASURES = ("precision@1", "precision@10", "mAP@100", "recall@1", "recall@10")


def job(script: str, env: dict, *args) -> subprocess.CompletedProcess:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(ROOT / script), *args], env=env, cwd=ROOT,
                            capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{script} failed:\n{result.stderr}")
    result.seconds = time.perf_counter() - started
    return result


def environment(database: Path, image_root: Path, **settings) -> dict:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}",
           "IMAGE_ROOT": str(image_root), "LOG_LEVEL": "WARNING"}
    env.update({name.upper(): str(value) for name, value in settings.items()})
    return env


def scores(env: dict, truth: Path) -> dict:
    return json.loads(job("evaluate.py", env, str(truth), "--json").stdout)["spaces"]


def row(label: str, measures: dict) -> str:
    return f"| {label} | " + " | ".join(f"{measures[m]:.4f}" for m in MEASURES) + " |"


def sweep(database: Path, image_root: Path, truth: Path, dimensions, shrinkages,
          augmented) -> None:
    env = environment(database, image_root)
    features = job("create_image_features.py", env, "--quiet")
    print(f"features: {features.stdout.strip()} ({features.seconds:.0f} s)", file=sys.stderr)
    print("| space | " + " | ".join(MEASURES) + " | grouping run |")
    print("|---|" + "---|" * (len(MEASURES) + 1))
    pool3 = None
    for shrinkage in shrinkages:
        for dimension in dimensions:
            env = environment(database, image_root, whitened_dimensions=dimension,
                              whitened_shrinkage=shrinkage, augmented_k=0)
            grouping = job("group_images.py", env, "--quiet")
            spaces = scores(env, truth)
            if pool3 is None:
                pool3 = spaces["pool3"]
                print(row("pool3 (original)", pool3) + " |")
            print(row(f"whitened D = {dimension}, β = {shrinkage}", spaces["whitened"])
                  + f" {grouping.seconds:.1f} s |", flush=True)
    for k, alpha in augmented:
        env = environment(database, image_root, augmented_k=k, augmented_alpha=alpha)
        grouping = job("group_images.py", env, "--quiet")
        print(row(f"augmented k = {k}, α = {alpha:g} (whitened at the defaults)",
                  scores(env, truth)["augmented"]) + f" {grouping.seconds:.1f} s |",
              flush=True)


def subset(data: Path, work: Path, size: int, seed: int) -> tuple[Path, Path]:
    """Copy `size` random photos of the set into work; return (image root, truth CSV)."""
    with open(data / "ground_truth.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    chosen = random.Random(seed).sample(rows, size)
    root = work / f"subset-{size}-{seed}"
    if not root.exists():
        for entry in chosen:
            target = root / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(data / entry["path"], target)
    truth = work / f"subset-{size}-{seed}.csv"
    with open(truth, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "group"])
        writer.writerows((entry["path"], entry["group"]) for entry in chosen)
    return root, truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=ROOT.parent / "shared" / "data" / "oxford-flowers102-valtest")
    parser.add_argument("--work", type=Path)
    parser.add_argument("--dimensions", default="64,128,256,384,512")
    parser.add_argument("--shrinkage", default="0,0.25,0.5,1")
    parser.add_argument("--augmented-k", default="1,2,3,5,10")
    parser.add_argument("--alpha", default="1,3")
    parser.add_argument("--subset", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-spaces-"))
    work.mkdir(parents=True, exist_ok=True)
    dimensions = [int(d) for d in args.dimensions.split(",")]
    shrinkages = [float(b) for b in args.shrinkage.split(",")]
    augmented = [(int(k), float(alpha)) for alpha in args.alpha.split(",")
                 for k in args.augmented_k.split(",")]
    print(f"## {args.data.name}: every photo ({work})\n")
    sweep(work / "all.sqlite3", args.data, args.data / "ground_truth.csv", dimensions,
          shrinkages, augmented)
    if args.subset:
        root, truth = subset(args.data, work, args.subset, args.seed)
        print(f"\n## a random {args.subset} of them (seed {args.seed})\n")
        sweep(work / f"subset-{args.subset}-{args.seed}.sqlite3", root, truth, [256],
              [0.0, 0.5], augmented)


if __name__ == "__main__":
    main()
