"""Every program that talks to MariaDB does so through mysql-connector's C extension.

The extension cannot load once TensorFlow or numba has (static TLS); the driver then falls
back to pure Python without a word, at several times the CPU per query. Each check runs in
a fresh interpreter, since this one loaded the driver long ago.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = ["service", "create_image_features", "group_images", "import_metadata",
                "evaluate", "report_duplicates", "report_hubs"]


def run_python(code: str, **env: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env={"PATH": "/usr/bin:/bin", **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_the_driver_keeps_its_c_extension_when_tensorflow_and_numba_load_later(entry_point):
    # What a run does: the program's module first, the heavy libraries when work begins.
    out = run_python(f"import {entry_point}, numba, tensorflow, mysql.connector\n"
                     "print(mysql.connector.HAVE_CEXT)")
    assert out.splitlines()[-1] == "True"


def test_the_services_connections_are_the_c_extensions(mariadb_url):
    out = run_python(
        "import service\n"
        "app = service.create_app()\n"
        "with app.app_context():\n"
        "    from service.database import connection\n"
        "    print(type(connection().connection.driver_connection).__name__)",
        DATABASE_URL=mariadb_url, IMAGE_ROOT=str(ROOT / "sample_images"))
    assert out.splitlines()[-1] == "CMySQLConnection"
