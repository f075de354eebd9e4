from sqlalchemy.engine import make_url

from runtime.cli import legacy_database_url


def test_legacy_url_escapes_credentials():
    url = make_url(legacy_database_url("db.example", "3306", "images", "jobs", "p@ss/w:rd"))
    assert url.drivername == "mysql+mysqlconnector"
    assert (url.host, url.port, url.database) == ("db.example", 3306, "images")
    assert (url.username, url.password) == ("jobs", "p@ss/w:rd")


def test_legacy_url_rejects_a_non_numeric_port():
    import pytest
    with pytest.raises(ValueError, match="'abc'"):
        legacy_database_url("h", "abc", "n", "u", "p")


# The jobs' failures that are not programming errors end as one line and exit status 1.

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def run_job(run_main, script: str, tmp_path: Path, **settings):
    """Run the script's main(argv) in this process (its real command has its own test)."""
    values = {"LOG_LEVEL": "WARNING", "IMAGE_ROOT": str(ROOT / "sample_images"),
              "DATABASE_URL": f"sqlite:///{tmp_path / 'images.sqlite3'}",
              "MODEL_CACHE": str(ROOT / "data" / "inception_v3_2015_12_05.weights.h5"),
              "VECTOR_CACHE": str(tmp_path / "vectors"), **settings}
    return run_main(script, "--quiet", env=values, cwd=tmp_path)


def assert_one_line(result, *words):
    """Exit 1, no traceback, and one line of the job's own on stderr (TensorFlow's
    start-up chatter aside) that holds `words`."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines()
             if not line.startswith(("WARNING: All log messages", "I0000 "))]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("script", ["create_image_features.py", "group_images.py"])
def test_a_database_the_project_does_not_support_is_named(script, tmp_path, run_main):
    result = run_job(run_main, script, tmp_path,
                     DATABASE_URL="postgresql://user:secret@localhost/images")
    assert_one_line(result, "postgresql", "SQLite", "MariaDB")
    assert "secret" not in result.stderr


@pytest.mark.parametrize("script", ["create_image_features.py", "group_images.py"])
def test_a_driver_that_is_not_installed_is_one_line(script, tmp_path, run_main):
    result = run_job(run_main, script, tmp_path,
                     DATABASE_URL="mysql+pymysql://user:secret@127.0.0.1:1/images")
    assert_one_line(result, "driver", "pymysql")
    assert "secret" not in result.stderr


def test_a_model_cache_that_cannot_be_written_is_one_line(tmp_path, run_main):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache's folder should be")
    result = run_job(run_main, "create_image_features.py", tmp_path,
                     MODEL_CACHE=str(blocker / "weights.h5"))
    assert_one_line(result, "create_image_features.py: error: cannot load the model",
                    "not-a-folder")
