"""Helpers for the browser tests: Debian's chromium, gunicorn on loopback, the archives'
specs (the `browser` fixture is in conftest.py, the servers in service/conftest.py)."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from service_support import SPECS, Spec

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]

# test_browser's archive: enough grouped images that a neighbour list is longer than the
# first page of 20.
BROWSER_SPECS = SPECS + tuple(Spec(f"series/photo_{n:02d}.jpg") for n in range(1, 31))
# test_browser_browse's archive: 7 sheets in one folder, one more in its subfolder.
GALLERY_FOLDER = "Nachlass Müller/Kasten 1"
GALLERY_SPECS = SPECS + tuple(Spec(f"{GALLERY_FOLDER}/Blatt {n:02d}.jpg")
                              for n in range(1, 8)) + \
    (Spec(f"{GALLERY_FOLDER}/Unterordner/innen.jpg"),)


def _chromium() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        message = f"Chromium not found at {path}; install Debian's chromium"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def gunicorn(env: dict):
    """Yield the base URL of gunicorn serving the service with these settings on loopback."""
    port = _free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--threads", "4", "--no-control-socket", "service:create_app()"],
        # The search model loads only where a fixture asks for it (SEARCH_PRELOAD=1).
        cwd=ROOT, env={**os.environ, "SEARCH_PRELOAD": "0", **env})
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).read()
                break
            except OSError:
                assert process.poll() is None, "gunicorn exited"
                time.sleep(0.1)
        else:
            pytest.fail("gunicorn did not answer within 10 s")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
