#!/usr/bin/env python3
"""Run both jobs on a SLURM cluster: Dask workers as SLURM jobs (dask-jobqueue).

    examples/slurm_cluster.py --jobs 4 --cores 16 --memory 64GB [--queue NAME]
        [--account NAME] [--walltime 04:00:00] [--processes 1] [--interface ib0]
        [--features-only | --grouping-only] [--print-script]

Run it on a login or submit node, from a checkout on a file system the compute nodes
share, with the project's virtual environment: it starts the Dask scheduler in this
process, submits `--jobs` SLURM jobs that each start `--processes` worker processes with
this Python and this checkout, runs the feature job and then the grouping job on them,
and cancels the SLURM jobs when done. The settings (DATABASE_URL, IMAGE_ROOT, ...) come
from the environment and .env as for the jobs themselves; only this process opens the
database. The compute nodes need the images at the same IMAGE_ROOT path, the weights
cache (MODEL_CACHE) or the weights package, and network access to this node's
scheduler port; not to the database. --print-script prints the SLURM job script and
submits nothing.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent

from runtime.cli import setup_logging, summary_lines  # noqa: E402
from runtime.jobrun import JobError  # noqa: E402
from runtime.settings import load_settings  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="SLURM jobs (default 2)")
    parser.add_argument("--cores", type=int, required=True, help="cores per SLURM job")
    parser.add_argument("--memory", required=True, help="memory per SLURM job, e.g. 64GB")
    parser.add_argument("--processes", type=int, default=1,
                        help="worker processes per job (default 1: one model and one "
                             "copy of the vectors per node; its threads run the tasks)")
    parser.add_argument("--queue", help="SLURM partition")
    parser.add_argument("--account", help="SLURM account")
    parser.add_argument("--walltime", default="04:00:00", help="per job (default 04:00:00)")
    parser.add_argument("--interface", help="network interface the workers and the "
                                            "scheduler talk on, e.g. ib0")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--features-only", action="store_true")
    which.add_argument("--grouping-only", action="store_true")
    parser.add_argument("--print-script", action="store_true",
                        help="print the SLURM job script and submit nothing")
    return parser.parse_args(argv)


def make_cluster(args: argparse.Namespace):
    from dask_jobqueue import SLURMCluster
    return SLURMCluster(
        cores=args.cores, memory=args.memory, processes=args.processes,
        queue=args.queue, account=args.account, walltime=args.walltime,
        interface=args.interface, python=sys.executable,
        # The workers import the project's modules from the shared checkout.
        job_script_prologue=[f"cd {PROJECT}", f"export PYTHONPATH={PROJECT}",
                             "export TF_CPP_MIN_LOG_LEVEL=1"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = load_settings()
    setup_logging(settings.log_level)
    with make_cluster(args) as cluster:
        if args.print_script:
            print(cluster.job_script())
            return 0
        cluster.scale(jobs=args.jobs)
        try:
            if not args.grouping_only:
                from jobs.features.job import run as features
                print("\n".join(summary_lines("features", features(settings,
                                                                    scheduler=cluster))))
            if not args.features_only:
                from jobs.grouping.run import run as grouping
                import group_images
                print("\n".join(group_images.summary("grouping",
                                                     grouping(settings, scheduler=cluster))))
        except JobError as error:
            print(f"slurm_cluster.py: error: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    logging.captureWarnings(True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    sys.exit(main())
