"""The import contract (.importlinter): each layer imports only the layers below it.

numerics (pure arithmetic) < model | db (side by side, neither importing the other) <
runtime < jobs | service (side by side: the service never reaches into a job).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / ".importlinter"
LAYERS = ("numerics", "model", "db", "runtime", "jobs", "service")
LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='.importlinter', no_cache=True))")


def lint(folder: Path) -> subprocess.CompletedProcess:
    """Run lint-imports on the packages in `folder`, in a fresh interpreter: the linter
    configures logging for the whole process, and the folder's packages come first on
    sys.path there, before the installed project's."""
    return subprocess.run([sys.executable, "-c", LINT], cwd=folder, capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(folder)})


def test_the_project_keeps_its_import_contract():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("package, violation", [
    ("numerics", "import db.models"),             # the lowest layer reaching up
    ("model", "from db import engine"),           # side by side: model and db
    ("db", "import runtime.settings"),            # a lower layer reaching up
    ("service", "from jobs.grouping import run"),  # the service in a job's internals
    ("numerics", "import sqlalchemy"),            # a library the layer must not use
    ("jobs", "import flask"),
])
def test_a_planted_violation_breaks_the_contract(tmp_path, package, violation):
    for name in LAYERS:
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__", "templates", "static"))
    shutil.copy(CONTRACT, tmp_path)
    (tmp_path / package / "planted.py").write_text(violation + "\n")
    result = lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{package}.planted" in result.stdout
