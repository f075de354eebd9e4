"""The cluster's full grouping run: symmetric blocks (issue 27) against rows searched
against all (the path before), at equal workers, in one run; no database.

Both on one LocalCluster of W worker processes × 1 thread, on N pool_3-like vectors
(bench_grouping.pool3_like), k = 100:
- rows against all: a task per block of 2048 rows, ExactIndex.search of those rows
  against every vector (every distance block computed for each of its two sides);
- symmetric: OnCluster.full, search_all's blocks on the workers (each block once);
- in-process: InProcess.full (search_all on this process's threads), for reference.
The lists of all three are compared bit for bit.

    .venv/bin/python bench/bench_dask_symmetric.py [--workers 2] [--n 10000] [--k 100] [--rounds 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from bench_grouping import pool3_like
from jobs.grouping.compute import KEPT, InProcess, OnCluster
from numerics.list_changes import ListChanges
from runtime.distribute import windowed

BLOCK_ROWS = 2048
MEMORY = 2048 << 20  # GROUPING_MEMORY_MB's default


def _search_rows(index, start, stop, k, memory_bytes):
    """The worker task of the path before: rows start..stop against all."""
    return index.search(index.vectors[start:stop], index.ids[start:stop], k, memory_bytes)


def rows_against_all(mapper: OnCluster, k: int):
    calls = ((start, _search_rows, (mapper.index, start,
                                    min(start + BLOCK_ROWS, len(mapper.ids)), k,
                                    mapper.memory_bytes))
             for start in range(0, len(mapper.ids), BLOCK_ROWS))
    found = [result for _, result in windowed(mapper.client, calls, ordered=True,
                                               what="block", kept=KEPT)]
    return np.vstack([f[0] for f in found]), np.vstack([f[1] for f in found])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    vectors = pool3_like(args.n, seed=27)
    ids = np.arange(1, args.n + 1, dtype=np.int64)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; "
          f"N = {args.n}, k = {args.k}, {args.workers} workers × 1 thread")
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        mapper = OnCluster(client, vectors, ids, MEMORY)
        # The engine's loops loaded (or compiled) in every worker before the clock.
        warm = OnCluster(client, vectors[:600], ids[:600], MEMORY)
        rows_against_all(warm, 5)
        list(warm.full(5, 256))
        warm.close()
        times, results, cpu = {}, {}, {}

        def measure(label, compute):
            started, cpu_started = time.perf_counter(), time.process_time()
            results[label] = compute()
            times.setdefault(label, []).append(time.perf_counter() - started)
            cpu.setdefault(label, []).append(time.process_time() - cpu_started)

        paths = {"rows against all": lambda: rows_against_all(mapper, args.k),
                 "symmetric": lambda: list(mapper.full(args.k, BLOCK_ROWS))}
        # Alternating (A B B A ...): a load that rises or falls during the run hits both.
        for round_ in range(args.rounds):
            for label in (list(paths) if round_ % 2 == 0 else list(paths)[::-1]):
                measure(label, paths[label])
        local = InProcess(vectors, ids, MEMORY)
        measure("in-process", lambda: list(local.full(args.k, BLOCK_ROWS)))
        mapper.close()
    before = ListChanges.replacing(ids, *results["rows against all"]).added
    for label in ("symmetric", "in-process"):
        added = [entry for _, changes in results[label] for entry in changes.added]
        print(f"{label}: lists bit for bit equal to rows against all: {added == before}")
    for label, seconds in times.items():
        print(f"{label:18s} " + ", ".join(f"{s:.1f} s" for s in seconds)
              + " (this process's CPU " + ", ".join(f"{c:.1f} s" for c in cpu[label]) + ")")
    print(f"speed-up of symmetric over rows against all at {args.workers} workers: "
          f"{sum(times['rows against all']) / sum(times['symmetric']):.2f}× in all rounds; "
          "per round " + ", ".join(f"{a / b:.2f}×" for a, b in zip(times["rows against all"],
                                                                  times["symmetric"])))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
