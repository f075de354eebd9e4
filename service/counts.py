"""The image counts by status that the home page, /api/v1/stats and /image_count show,
counted at most once every COUNTS_SECONDS by each worker.

Counting is a scan of the status index, about 0.1 s of the database's time per 100,000
images on MariaDB (bench/results/million.md): at a million images every request that
counted would cost a second of it, and a few such requests a second would hold the
server. The counts change only when a job commits, so a few seconds late is as good.
"""
from __future__ import annotations

import threading
import time

from flask import Flask, current_app
from sqlalchemy.engine import Connection

import db.images
from db.models import OK

COUNTS_SECONDS = 5.0


class Counts:
    """The counts by status of one app, and when they were read."""

    def __init__(self, seconds: float = COUNTS_SECONDS, clock=time.monotonic):
        self.seconds, self.clock = seconds, clock
        self.lock = threading.Lock()
        self.by_status: dict[str, int] | None = None
        self.read_at = 0.0

    def get(self, connection: Connection) -> dict[str, int]:
        # Under the lock: the threads that come while one counts wait for its answer
        # instead of each counting again.
        with self.lock:
            if self.by_status is None or self.clock() - self.read_at >= self.seconds:
                self.by_status = db.images.count_by_status(connection)
                self.read_at = self.clock()
            return dict(self.by_status)


def init_app(app: Flask) -> None:
    app.extensions["image_counts"] = Counts()


def by_status(connection: Connection) -> dict[str, int]:
    """Return the number of images in each status (every status present, maybe 0)."""
    return current_app.extensions["image_counts"].get(connection)


def ok(connection: Connection) -> int:
    """Return the number of images whose features are current (status ok)."""
    return by_status(connection)[OK]
