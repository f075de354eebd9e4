"""evaluate.py on a hand-built collection whose measures are worked out by hand."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from db.engine import make_engine, upgrade
from jobs.evaluation.ground_truth import GroundTruthError, read_csv
from jobs.evaluation.metrics import score
from jobs.evaluation.report import evaluate

ROOT = Path(__file__).resolve().parents[2]
# The collection (its images and hand-made lists) is evaluation_collection in conftest.py.
CSV = ("path,group\na/1.jpg,A\na/2.jpg,A\na/3.jpg,A\nb/1.jpg,B\nb/2.jpg,B\n"
       "missing/nothere.jpg,A\nc/1.jpg,C\n")


def report_of(engine, tmp_path, text: str):
    (tmp_path / "truth.csv").write_text(text)
    with engine.connect() as connection:
        return evaluate(connection, read_csv(tmp_path / "truth.csv"))


def test_measures_worked_out_by_hand(evaluation_collection, tmp_path):
    report = report_of(evaluation_collection, tmp_path, CSV)
    assert (report.rows, report.queries) == (7, 6)
    assert [(row.line, row.path) for row in report.not_found] == [(7, "missing/nothere.jpg")]
    # Per query (pool3), relevant ranks and AP: a/1 [2, 4] of R=2, (1/2 + 2/4)/2 = 0.5;
    # a/2 [1, 2], 1; a/3 [4] of R=2 (a/2 missing), (1/4)/2 = 0.125; b/1 [1], 1;
    # b/2 [4] of R=1, 0.25. c/1 has no other image of its group: not scored.
    assert report.spaces["pool3"] == pytest.approx({
        "queries_scored": 5, "without_relevant": 1, "without_list": 0,
        "mAP@100": (0.5 + 1 + 0.125 + 1 + 0.25) / 5,
        "recall@1": (0 + 0.5 + 0 + 1 + 0) / 5, "recall@5": (1 + 1 + 0.5 + 1 + 1) / 5,
        "recall@10": (1 + 1 + 0.5 + 1 + 1) / 5,
        "precision@1": 2 / 5, "precision@10": (0.2 + 0.2 + 0.1 + 0.1 + 0.1) / 5})
    assert report.spaces["whitened"] == pytest.approx({
        "queries_scored": 5, "without_relevant": 1, "without_list": 0, "mAP@100": 1.0,
        "recall@1": (0.5 + 0.5 + 0.5 + 1 + 1) / 5, "recall@5": 1.0, "recall@10": 1.0,
        "precision@1": 1.0, "precision@10": (0.2 + 0.2 + 0.2 + 0.1 + 0.1) / 5})


def test_with_roles_only_database_images_compete(evaluation_collection, tmp_path):
    report = report_of(evaluation_collection, tmp_path,
                       "path,group,role\na/1.jpg,A,query\n"
                       "a/2.jpg,A,db\na/3.jpg,A,db\nb/1.jpg,B,db\nb/2.jpg,B,query\n")
    # a/1: list without the query b/2 is [b/1, a/2, x, a/3]: AP (1/2 + 2/4)/2 = 0.5.
    # b/2: without the query a/1, [a/2, x, b/1]: its one relevant third, AP 1/3.
    assert report.queries == 2
    assert report.spaces["pool3"]["mAP@100"] == pytest.approx((0.5 + 1 / 3) / 2)
    assert report.spaces["pool3"]["precision@1"] == 0
    assert report.spaces["pool3"]["recall@5"] == 1


def test_a_short_list_counts_its_missing_entries_as_misses():
    assert score([True], 3, k=100)["mAP@100"] == pytest.approx(1 / 3)
    assert score([], 1)["recall@10"] == 0
    assert score([False] * 3 + [True], 1, k=3)["mAP@3"] == 0
    with pytest.raises(ValueError):
        score([True], 0)


@pytest.mark.parametrize("text, message", [
    ("", "must name the columns path and group (missing: path, group; found: nothing)"),
    ("path,name\na.jpg,x\n", "(missing: group; found: path, name)"),
    ("path,group\n", "no rows below the header"),
    ("path,group\na.jpg,A\n,B\n", "line 3: empty path or group"),
    ("path,group\na.jpg,A\nb.jpg,B\na.jpg,C\n", "line 4: a.jpg is listed twice (first on "
                                                 "line 2)"),
    ("path,group,role\na.jpg,A,db\n", "no query rows"),
])
def test_bad_csv_files_are_refused_with_one_line(tmp_path, text, message):
    (tmp_path / "truth.csv").write_text(text)
    with pytest.raises(GroundTruthError, match=re.escape(message)):
        read_csv(tmp_path / "truth.csv")


def run_evaluate(run_main, database_url, *args):
    """Run main(argv) in this process with this database only."""
    return run_main("evaluate.py", *args, cwd=ROOT, database_url=database_url)


def run_command(database_url, *args):
    """Run the real command line (once: main(argv) has the other tests)."""
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run([sys.executable, str(ROOT / "evaluate.py"), *args], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_command_prints_a_table_or_json_and_fails_with_one_line(sqlite_url, tmp_path,
                                                                   run_main):
    engine = make_engine(sqlite_url)
    upgrade(engine)
    engine.dispose()
    (tmp_path / "truth.csv").write_text(CSV)
    unknown = run_command(sqlite_url, str(tmp_path / "truth.csv"))
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == [
        "evaluate.py: error: none of the CSV's paths is an image in the database; paths "
        "must be relative to IMAGE_ROOT, as in the API's image path"]
    (tmp_path / "bad.csv").write_text("file,group\n")
    bad = run_evaluate(run_main, sqlite_url, str(tmp_path / "bad.csv"))
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    missing = run_evaluate(run_main, sqlite_url, str(tmp_path / "nothere.csv"))
    assert missing.returncode == 1 and "cannot read it" in missing.stderr


def test_the_command_on_the_collection(evaluation_collection, tmp_path, database_url,
                                       run_main):
    (tmp_path / "truth.csv").write_text(CSV)
    result = run_evaluate(run_main, database_url, str(tmp_path / "truth.csv"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "7 rows, 6 queries found in the database, 1 rows not found"
    assert lines[1] == "  not found: line 7: missing/nothere.jpg"
    assert lines[2].split() == ["pool3", "whitened"]
    assert lines[3].split() == ["queries_scored", "5", "5"]
    assert lines[6].split() == ["mAP@100", "0.5750", "1.0000"]
    as_json = json.loads(run_evaluate(run_main, database_url, str(tmp_path / "truth.csv"),
                                      "--json").stdout)
    assert as_json["spaces"]["pool3"]["mAP@100"] == pytest.approx(0.575)
    assert as_json["not_found"] == [{"line": 7, "path": "missing/nothere.jpg"}]
