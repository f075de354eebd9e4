"""import_metadata.py: catalogue rows joined to images, all or nothing, on both databases."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from runtime.jobrun import JobError
from jobs.catalogue import csv_file
from jobs.catalogue.job import run
from jobs.catalogue.plan import apply, make_plan
from db.models import CatalogueRecord

ROOT = Path(__file__).resolve().parents[2]
# The images (ids 1..7) are catalogue_db's, in conftest.py.


def records(engine) -> dict[int, dict]:
    columns = (CatalogueRecord.external_id, CatalogueRecord.title, CatalogueRecord.url,
               CatalogueRecord.extra, CatalogueRecord.excluded)
    with engine.connect() as connection:
        rows = connection.execute(select(CatalogueRecord.image_id, *columns)).all()
    return {row.image_id: {c.key: getattr(row, c.key) for c in columns} for row in rows}


def write(tmp_path, text: str, name="catalogue.csv", encoding="utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def record(external_id=None, title=None, url=None, extra=None, excluded=False) -> dict:
    return {"external_id": external_id, "title": title, "url": url,
            "extra": None if extra is None else json.dumps(extra, ensure_ascii=False,
                                                           sort_keys=True),
            "excluded": excluded}


GOOD = ("path,file_name,external_id,title,url,excluded,Inventar\n"
        "flowers/rose.jpg,,K-1,Rose,https://catalogue.example/K-1,,I 12\n"
        ",tulip.jpg,K-2,\"Tulpe, gelb\",http://catalogue.example/K-2,no,\n"
        "Nachlass Müller/straße 1.jpg,,K-5,Straße 1,,yes,I 13\n"
        ",moved.jpg,K-7,Moved,,0,\n")


def test_rows_join_by_path_or_unique_file_name(tmp_path, catalogue_db, catalogue_settings):
    counts = run(catalogue_settings, write(tmp_path, "\ufeff" + GOOD), out=io.StringIO())
    assert counts == {"new": 4, "updated": 0, "unchanged": 0, "bad": 0}
    assert records(catalogue_db) == {
        1: record("K-1", "Rose", "https://catalogue.example/K-1", {"Inventar": "I 12"}),
        2: record("K-2", "Tulpe, gelb", "http://catalogue.example/K-2"),
        5: record("K-5", "Straße 1", None, {"Inventar": "I 13"}, excluded=True),
        7: record("K-7", "Moved")}  # the present image, not the missing one of the name


def test_semicolons_and_a_byte_order_mark(tmp_path, catalogue_db, catalogue_settings):
    text = "\ufeffpath;external_id;title\r\nflowers/rose.jpg;K-1;Rose; rot\r\n"
    with pytest.raises(JobError, match="line 2: 4 fields|bad rows"):
        run(catalogue_settings, write(tmp_path, text), out=io.StringIO(),
            err=io.StringIO())
    text = "\ufeffpath;external_id;title\r\nflowers/rose.jpg;K-1;\"Rose; rot\"\r\n"
    run(catalogue_settings, write(tmp_path, text), out=io.StringIO())
    assert records(catalogue_db) == {1: record("K-1", "Rose; rot")}


BAD = ("path,file_name,external_id,title,url,excluded\n"
       "flowers/rose.jpg,,K-1,Rose,https://catalogue.example/K-1,\n"     # 2 good
       "flowers/nowhere.jpg,,K-9,Unknown path,,\n"                      # 3 unknown path
       ",nothing.jpg,K-10,Unknown name,,\n"                             # 4 unknown name
       ",duplicate.jpg,K-11,Ambiguous,,\n"                              # 5 ambiguous
       "flowers/tulip.jpg,,K-12,Twice A,,\n"                            # 6 dup id
       "Nachlass Müller/straße 1.jpg,,K-12,Twice B,,\n"                 # 7 dup id
       "a/duplicate.jpg,,K-3,JS,javascript:alert(1),\n"                 # 8 bad scheme
       "b/duplicate.jpg,,K-4,FTP,ftp://example.org/x,\n"                # 9 bad scheme
       "new/moved.jpg,,K-7,Excluded?,,maybe\n"                          # 10 bad flag
       "new/moved.jpg,,K-8,too,many,fields,here\n"                      # 11 field count
       ",,K-13,No join,,\n")                                            # 12 no join


def test_each_bad_row_is_reported_by_line_and_nothing_is_applied(tmp_path, catalogue_db,
                                                                 catalogue_settings):
    err = io.StringIO()
    with pytest.raises(JobError, match="10 bad rows .* nothing was changed"):
        run(catalogue_settings, write(tmp_path, BAD), out=io.StringIO(), err=err)
    lines = err.getvalue().splitlines()
    assert [int(line.split(":")[0].split()[1]) for line in lines] == list(range(3, 13))
    text = "\n".join(lines)
    for expected in ("line 3: unknown image: no image has the path 'flowers/nowhere.jpg'",
                     "line 4: unknown image: no image has the file name 'nothing.jpg'",
                     "line 5: ambiguous file name 'duplicate.jpg': 2 images",
                     "line 6: duplicate external_id 'K-12' is also on line 7",
                     "line 7: duplicate external_id 'K-12' is also on line 6",
                     "line 8: url 'javascript:alert(1)' is not an http or https address",
                     "line 9: url 'ftp://example.org/x' is not an http or https address",
                     "line 10: excluded must be one of", "line 11: 7 fields where the "
                     "header has 6", "line 12: neither path nor file_name is given"):
        assert expected in text, expected
    assert records(catalogue_db) == {}


def test_skip_bad_applies_the_good_rows(tmp_path, catalogue_db, catalogue_settings):
    counts = run(catalogue_settings, write(tmp_path, BAD), skip_bad=True,
                 out=io.StringIO(), err=io.StringIO())
    assert counts == {"new": 1, "updated": 0, "unchanged": 0, "bad": 10}
    assert records(catalogue_db) == {
        1: record("K-1", "Rose", "https://catalogue.example/K-1")}


def test_an_external_id_of_another_image_in_the_database_is_a_bad_row(tmp_path,
                                                                      catalogue_db,
                                                                      catalogue_settings):
    run(catalogue_settings, write(tmp_path, "path,external_id\nflowers/rose.jpg,K-1\n"),
        out=io.StringIO())
    err = io.StringIO()
    with pytest.raises(JobError):
        run(catalogue_settings,
            write(tmp_path, "path,external_id\nflowers/tulip.jpg,K-1\n"),
            out=io.StringIO(), err=err)
    assert err.getvalue() == "line 2: duplicate external_id 'K-1': image 1 already has it\n"
    # The same file with the first image giving its id up is fine: ids can move.
    text = "path,external_id\nflowers/tulip.jpg,K-1\nflowers/rose.jpg,K-0\n"
    run(catalogue_settings, write(tmp_path, text), out=io.StringIO())
    assert {i: r["external_id"] for i, r in records(catalogue_db).items()} == \
        {1: "K-0", 2: "K-1"}


def test_a_reimport_updates_only_its_columns_and_swaps_ids(tmp_path, catalogue_db,
                                                           catalogue_settings):
    run(catalogue_settings, write(tmp_path, GOOD), out=io.StringIO())
    # Two images swap their external ids; rose gets a new title; the url column is
    # absent, so the stored urls stay; the extra column is absent, so extras stay.
    text = ("path,external_id,title\nflowers/rose.jpg,K-2,Rose (rot)\n"
            "flowers/tulip.jpg,K-1,\"Tulpe, gelb\"\n")
    counts = run(catalogue_settings, write(tmp_path, text), out=io.StringIO())
    assert counts == {"new": 0, "updated": 2, "unchanged": 0, "bad": 0}
    stored = records(catalogue_db)
    assert stored[1] == record("K-2", "Rose (rot)", "https://catalogue.example/K-1",
                               {"Inventar": "I 12"})
    assert stored[2] == record("K-1", "Tulpe, gelb", "http://catalogue.example/K-2")
    assert stored[5]["external_id"] == "K-5"  # rows not in the file are left alone
    counts = run(catalogue_settings, write(tmp_path, text), out=io.StringIO())
    assert counts == {"new": 0, "updated": 0, "unchanged": 2, "bad": 0}


def test_dry_run_reports_the_changes_and_changes_nothing(tmp_path, catalogue_db,
                                                         catalogue_settings):
    run(catalogue_settings, write(tmp_path, GOOD), out=io.StringIO())
    before = records(catalogue_db)
    text = "path,title\nflowers/rose.jpg,Rosa\nflowers/tulip.jpg,\"Tulpe, gelb\"\nb/duplicate.jpg,Neu\n"
    out = io.StringIO()
    counts = run(catalogue_settings, write(tmp_path, text), dry_run=True, out=out)
    assert counts == {"new": 1, "updated": 1, "unchanged": 1, "bad": 0}
    assert out.getvalue() == ("line 2: update for image 1 (flowers/rose.jpg)\n"
                              "    title: 'Rose' -> 'Rosa'\n"
                              "line 4: new record for image 4 (b/duplicate.jpg)\n"
                              "    title: None -> 'Neu'\n")
    assert records(catalogue_db) == before


def test_a_failure_while_writing_leaves_nothing_applied(tmp_path, catalogue_db):
    """The plan is made and half written when a real constraint fails: another writer
    took an external id meanwhile. The whole import is rolled back."""
    with catalogue_db.begin() as connection:
        connection.execute(insert(CatalogueRecord).values(
            image_id=3, external_id="K-3", excluded=False, updated_at=datetime(2026, 1, 1)))
    text = ("path,external_id,title\na/duplicate.jpg,K-3,changed title\n"
            "flowers/rose.jpg,K-1,Rose\nflowers/tulip.jpg,K-2,Tulpe\n")
    catalogue = csv_file.read(write(tmp_path, text))
    before = records(catalogue_db)
    from sqlalchemy.exc import DBAPIError
    with pytest.raises(DBAPIError):
        with catalogue_db.begin() as connection:
            plan = make_plan(connection, catalogue)
            assert [c.image_id for c in plan.updated] == [3]
            assert [c.image_id for c in plan.new] == [1, 2]
            # Commits while the import's transaction is open.
            with catalogue_db.begin() as other:
                other.execute(insert(CatalogueRecord).values(
                    image_id=4, external_id="K-2", excluded=False,
                    updated_at=datetime(2026, 1, 1)))
            apply(connection, plan)  # the update of 3 goes through, then K-2 clashes
    after = records(catalogue_db)
    assert after.pop(4)["external_id"] == "K-2"  # the other writer's row
    assert after == before  # image 3's title unchanged, 1 and 2 without records


@pytest.mark.parametrize("text, message", [
    ("external_id,title\nK-1,Rose\n", "needs a column path .* or file_name"),
    ("path,title,title\nx.jpg,a,b\n", "repeated columns title"),
    ("", "is empty"),
    ('path,title\nx.jpg,"open quote\n', "line 2"),
])
def test_unusable_files_are_one_clear_error(tmp_path, text, message):
    with pytest.raises(csv_file.CsvError, match=message):
        csv_file.read(write(tmp_path, text))


def test_a_file_not_in_utf8_names_the_line(tmp_path):
    path = write(tmp_path, "path,title\nflowers/rose.jpg,Rose\nx.jpg,Stra\xdfe\n",
                 encoding="latin-1")
    with pytest.raises(csv_file.CsvError, match=r"not UTF-8 text \(line 3"):
        csv_file.read(path)


def test_command_line_exit_status_and_one_line_errors(tmp_path, catalogue_db, run_main):
    env = {"DATABASE_URL": catalogue_db.url.render_as_string(hide_password=False),
           "PATH": "/usr/bin:/bin", "LOG_LEVEL": "WARNING"}

    def cli(*args):  # main(argv) in this process
        return run_main("import_metadata.py", *args, env=env, cwd=tmp_path)

    def command(*args):  # the real command line, once
        return subprocess.run([sys.executable, str(ROOT / "import_metadata.py"), *args],
                              capture_output=True, text=True, env=env, cwd=tmp_path)

    bad = cli(str(write(tmp_path, BAD)))
    assert bad.returncode == 1
    assert bad.stderr.splitlines()[-1].startswith("import_metadata.py: error: 10 bad rows")
    assert records(catalogue_db) == {}
    done = command(str(write(tmp_path, GOOD, name="good.csv")))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done: new 4, updated 0, unchanged 0, bad 0\n"
    missing = cli(str(tmp_path / "nothing.csv"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    assert len(missing.stderr.splitlines()) == 1
    with catalogue_db.connect() as connection:
        from db.models import Job
        outcomes = connection.execute(select(Job.kind, Job.outcome).order_by(Job.id)).all()
    assert outcomes == [("catalogue", "failed"), ("catalogue", "completed")]
