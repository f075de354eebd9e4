"""The MariaDB test server for tests that make their own databases (conftest.py's fixtures
and the module-wide collections), and the private server test_jobs_dying_database kills."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def mariadb_server_url() -> str:
    url = os.environ.get("TEST_MARIADB_URL")
    if not url:
        message = "TEST_MARIADB_URL is not set; start a server with scripts/mariadb.sh"
        if os.environ.get("REQUIRE_MARIADB") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return url


class KillableServer:
    """A private MariaDB server of scripts/mariadb.sh that a test may SIGKILL
    (test_jobs_dying_database)."""

    def __init__(self, port: str, folder: Path):
        self.env = {**os.environ, "TEST_MARIADB_PORT": port, "TEST_MARIADB_DIR": str(folder),
                    "TEST_MARIADB_BUFFER_POOL_SIZE": "128M"}
        self.pid_file = folder / "mariadb.pid"
        self.url = ""

    def start(self) -> None:
        self.url = subprocess.run([str(ROOT / "scripts" / "mariadb.sh"), "start"],
                                  env=self.env, check=True, capture_output=True, text=True,
                                  timeout=300).stdout.strip()

    def kill(self) -> None:
        """SIGKILL the server and wait until it is gone."""
        pid = int(self.pid_file.read_text())
        os.kill(pid, signal.SIGKILL)
        while Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid):
            time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"
