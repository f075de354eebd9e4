"""The walk of IMAGE_ROOT and the plan that compares it with the images table."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from db.images import KnownImage
from jobs.features.plan import CHANGED, NEW, REAPPEARED, RETRY, make_plan
from jobs.features.scan import Scan, ScannedFile, scan
from features_support import AS_OTHER_USER, open_tmp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def touch(path, data=b"x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as file:
        file.write(data)


def test_walk_takes_jpeg_files_in_any_case_recursively(tmp_path):
    for rel in ["a.jpg", "B.JPG", "c.Jpeg", "sub/deeper/d.jpeg", "sub/e.jpg",
                "notes.txt", "f.png", "g.jpg.bak", "sub/.h.jpg"]:
        touch(tmp_path / rel, b"abc")
    (tmp_path / "folder.jpg").mkdir()  # a folder with a JPEG name is not a file
    os.mkfifo(tmp_path / "pipe.jpg")  # opening a FIFO would block the walk
    found = scan(tmp_path)
    assert sorted(f.rel for f in found.files) == sorted(
        ["a.jpg", "B.JPG", "c.Jpeg", "sub/deeper/d.jpeg", "sub/e.jpg", "sub/.h.jpg"])
    assert found.unreadable_dirs == []
    entry = next(f for f in found.files if f.rel == "sub/e.jpg")
    stat = os.stat(tmp_path / "sub/e.jpg")
    assert (entry.size, entry.mtime_ns) == (3, stat.st_mtime_ns)
    assert entry.path_hash == hashlib.sha256(b"sub/e.jpg").hexdigest()
    assert entry.file_name == "e.jpg"
    assert scan(tmp_path).files == found.files  # same order every time


def test_walk_follows_no_symlinked_folder(tmp_path):
    touch(tmp_path / "photos/a.jpg")
    os.symlink(tmp_path, tmp_path / "photos/loop")  # a loop back to the root
    os.symlink(tmp_path / "photos", tmp_path / "alias")
    os.symlink(tmp_path / "photos/a.jpg", tmp_path / "link.jpg")  # a file link is a file
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "dangling.jpg")
    assert sorted(f.rel for f in scan(tmp_path).files) == ["link.jpg", "photos/a.jpg"]


def test_non_utf8_name_keeps_exact_identity_and_storable_text(tmp_path):
    raw = os.fsencode(tmp_path) + b"/Caf\xe9/\xff scan.jpg"
    os.makedirs(os.path.dirname(raw))
    with open(raw, "wb") as file:
        file.write(b"abc")
    (entry,) = scan(tmp_path).files
    assert os.fsencode(entry.rel) == b"Caf\xe9/\xff scan.jpg"
    assert entry.path_hash == hashlib.sha256(b"Caf\xe9/\xff scan.jpg").hexdigest()
    assert entry.text == "Caf\\xe9/\\xff scan.jpg"
    assert entry.file_name == "\\xff scan.jpg"
    entry.text.encode("utf-8")  # storable in a utf8mb4 column


def test_unreadable_folder_is_reported_and_skipped():
    code = ("import json, sys; from pathlib import Path; from jobs.features.scan import scan; "
            "s = scan(Path(sys.argv[1])); "
            "print(json.dumps([[f.rel for f in s.files], s.unreadable_dirs]))")
    with open_tmp() as root:
        touch(root / "open/a.jpg")
        touch(root / "locked/b.jpg")
        os.chmod(root / "locked", 0)
        try:
            result = subprocess.run([*AS_OTHER_USER, sys.executable, "-c", code, str(root)],
                                    cwd=ROOT, capture_output=True, text=True, check=True)
        finally:
            os.chmod(root / "locked", 0o755)
    files, unreadable = json.loads(result.stdout)
    assert files == ["open/a.jpg"]
    assert unreadable == ["locked"]
    assert "cannot read folder" in result.stderr


def known(id_, status="ok", size=3, mtime_ns=10, content_hash="h"):
    return KnownImage(id_, size, mtime_ns, status, content_hash)


def scanned(rel, size=3, mtime_ns=10):
    return ScannedFile(rel, "hash-" + rel, size, mtime_ns)


def test_plan_sorts_files_into_kinds():
    files = [scanned(r) for r in ["new", "pending", "same", "touched", "resized", "back",
                                  "failed", "failed-changed"]]
    files[3] = scanned("touched", mtime_ns=11)
    files[4] = scanned("resized", size=4)
    files[7] = scanned("failed-changed", mtime_ns=12)
    rows = {"hash-pending": known(1, "pending", None, None, None),
            "hash-same": known(2), "hash-touched": known(3), "hash-resized": known(4),
            "hash-back": known(5, "missing"), "hash-failed": known(6, "failed"),
            "hash-failed-changed": known(7, "failed"),
            "hash-gone": known(8), "hash-gone-failed": known(9, "failed"),
            "hash-gone-before": known(10, "missing")}
    plan = make_plan(Scan(files, []), rows)
    kinds = {w.file.rel: w.kind for w in plan.work}
    assert kinds == {"new": NEW, "pending": NEW, "touched": CHANGED, "resized": CHANGED,
                     "back": REAPPEARED, "failed-changed": CHANGED}
    assert [w.file.rel for w in plan.work] == [
        "new", "pending", "touched", "resized", "back", "failed-changed"]  # walk order
    assert plan.unchanged == 2  # same, failed
    assert plan.missing == [8, 9]
    retried = make_plan(Scan(files, []), rows, retry_failed=True)
    assert {w.file.rel: w.kind for w in retried.work}["failed"] == RETRY
    assert retried.unchanged == 1


def test_plan_limit_defers_the_rest_in_walk_order():
    files = [scanned(f"f{i}") for i in range(5)]
    plan = make_plan(Scan(files, []), {}, limit=2)
    assert [w.file.rel for w in plan.work] == ["f0", "f1"]
    assert plan.deferred == 3
    assert plan.counts()["deferred"] == 3 and plan.counts()[NEW] == 2
    assert make_plan(Scan(files, []), {}, limit=0).work == []


def test_plan_does_not_mark_files_under_unreadable_folders_missing():
    rows = {"hash-a/x.jpg": known(1), "hash-ab/y.jpg": known(2), "hash-a/b/z.jpg": known(3)}
    paths = {1: "a/x.jpg", 2: "ab/y.jpg", 3: "a/b/z.jpg"}
    plan = make_plan(Scan([], ["a"]), rows, paths=paths)
    assert plan.missing == [2]
    with pytest.raises(ValueError):
        make_plan(Scan([], ["a"]), rows)


def test_a_file_link_leading_out_of_the_root_is_skipped(tmp_path):
    root = tmp_path / "root"
    touch(root / "inside.jpg")
    touch(tmp_path / "outside.jpg")
    os.symlink(tmp_path / "outside.jpg", root / "out.jpg")
    os.symlink("/etc/passwd", root / "passwd.jpg")
    os.symlink(root / "inside.jpg", root / "again.jpg")
    assert sorted(f.rel for f in scan(root).files) == ["again.jpg", "inside.jpg"]
