"""The set-up scripts: valid bash, executable, and .ci/run runs the README's test command."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["scripts/setup.sh", "scripts/demo.sh", "scripts/test.sh", "scripts/mariadb.sh",
           ".ci/run", "db/mariadb-init-users.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_valid_bash(script):
    result = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def git_mode(path: str) -> str:
    fields = subprocess.run(["git", "ls-files", "-s", path], cwd=ROOT, capture_output=True,
                            text=True).stdout.split()
    if not fields:
        pytest.skip("not a git checkout, or the file is not committed yet")
    return fields[0]


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s != "db/mariadb-init-users.sh"])
def test_script_is_executable_in_git(script):
    # A clean clone gets its modes from git, not from this working tree.
    assert git_mode(script) == "100755", f"{script} is not executable in git: chmod +x, git add"


def test_mariadb_init_script_is_not_executable():
    # MariaDB's entrypoint sources a non-executable *.sh (so it can call the entrypoint's
    # docker_process_sql) but executes an executable one, where that function is missing.
    assert git_mode("db/mariadb-init-users.sh") == "100644"


def test_ci_runs_the_readme_test_command_and_nothing_else():
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "set -euo pipefail"
    assert lines[-1] == "./scripts/test.sh"
    assert all(line.startswith(("set ", "cd ")) for line in lines[:-1])
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "./scripts/demo.sh" in readme and "./scripts/test.sh" in readme


@pytest.mark.parametrize("args", [["--bogus"], ["--dev", "extra"]])
def test_setup_rejects_unknown_arguments(args):
    result = subprocess.run([str(ROOT / "scripts" / "setup.sh"), *args], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2 and "usage" in result.stderr


def test_setup_and_the_image_compile_the_engines_loops():
    # What the step leaves, a cache the jobs only read, is tested in
    # tests/jobs/test_precompile.py.
    setup = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    assert '\n"$VENV/bin/python" -m numerics.precompile\n' in setup
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "\nRUN python -m numerics.precompile\n" in dockerfile
