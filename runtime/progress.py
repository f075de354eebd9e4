"""Progress of a long run: a bar on a terminal, a log line now and then otherwise."""
from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm

log = logging.getLogger(__name__)


class Progress:
    """A progress bar on a terminal, a log line every `interval` seconds otherwise."""

    def __init__(self, total: int, unit: str, quiet: bool = False, interval: float = 30.0):
        self.total, self.unit, self.interval = total, unit, interval
        self.done = 0
        self.started = self.last_log = time.monotonic()
        self.bar = None
        self.quiet = quiet
        if not quiet and sys.stderr.isatty():
            self.bar = tqdm(total=total, unit=unit, dynamic_ncols=True, smoothing=0.1)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if not self.quiet and now - self.last_log >= self.interval:
            self.last_log = now
            rate = self.done / max(now - self.started, 1e-9)
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            log.info("%d/%d %s (%.1f %s/s, about %s left)", self.done, self.total, self.unit,
                     rate, self.unit, _duration(left))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown time"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
