"""Check that a database made by a previous release is served identically after this
release migrates it, and that a rerun of both jobs then has no work.

    .venv/bin/python tools/check_upgrade.py --previous DIR --images DIR --database-url URL

DIR is a checkout of the previous release (e.g. `git worktree add --detach /tmp/prev
<commit>`) whose packages run from it with this project's virtual env. The previous
release computes the features and the lists of --images (200 or more photos, so that it
learns the whitened space too) in the empty database at --database-url; its service
answers a sample of requests (both original endpoints, the neighbours in every space,
the image records, the feature plots); then this release's feature job (which brings the
schema up to date) and grouping job run, and this release's service must answer the same
requests with the same bytes of JSON or SVG, before and after the grouping job, and the
jobs must report no work. Prints what it found; exit status 1 on any difference.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
# Run by either release's interpreter from its own folder: its packages come first.
ANSWERS = """
import hashlib, json, sys
from service import create_app
client = create_app().test_client()
answers = {}
for path in json.load(sys.stdin):
    response = client.get(path)
    answers[path] = [response.status_code, hashlib.sha256(response.data).hexdigest()]
json.dump(answers, sys.stdout)
"""
# Changed on purpose: the grouping job's state left the counts (migration 0008).
LEFT_OUT = ("/api/v1/stats",)


def run(folder: Path, env: dict, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([sys.executable, *args], cwd=folder, env=env, input=stdin,
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(args[:2])} in {folder} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def sample_paths(database_url: str) -> list[str]:
    """Return the requests to compare: every 25th image's, the first and the last."""
    engine = create_engine(database_url)
    with engine.connect() as connection:
        ids = connection.execute(text("SELECT id FROM images WHERE status = 'ok' "
                                      "ORDER BY id")).scalars().all()
    engine.dispose()
    chosen = sorted(set(ids[::25] + ids[-1:]))
    paths = ["/image_count", "/api/v1/spaces", "/api/v1/images?limit=1000"]
    for i in chosen:
        paths += [f"/image_name/{i}", f"/image_name_and_neighbours/{i}",
                  f"/image_fingerprint/{i}", f"/api/v1/images/{i}",
                  f"/api/v1/images/{i}/features",
                  f"/api/v1/images/{i}/neighbours?limit=100&space=pool3",
                  f"/api/v1/images/{i}/neighbours?limit=100&space=whitened"]
    return paths


def summary(output: str) -> str:
    return output.strip().splitlines()[-1] if output.strip() else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--previous", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="check-upgrade-"))
    env = {**os.environ, "DATABASE_URL": args.database_url,
           "IMAGE_ROOT": str(args.images.resolve()),
           "MODEL_CACHE": str(ROOT / "data" / "inception_v3_2015_12_05.weights.h5"),
           "THUMBNAIL_CACHE": str(work / "thumbnails"), "SEARCH_CACHE": str(work / "search"),
           "VECTOR_CACHE": str(work / "vectors"), "PYTHONPATH": ""}
    previous, current = args.previous.resolve(), ROOT
    print("previous release:", summary(run(previous, env, "create_image_features.py",
                                            "--quiet")))
    print("previous release:", summary(run(previous, env, "group_images.py", "--quiet")))
    paths = sample_paths(args.database_url)
    before = json.loads(run(previous, env, "-c", ANSWERS, stdin=json.dumps(paths)))
    print(f"{len(paths)} requests answered by the previous release")

    features = run(current, env, "create_image_features.py", "--quiet")
    print("this release, features:", features.strip().replace("\n", " | "))
    migrated = json.loads(run(current, env, "-c", ANSWERS, stdin=json.dumps(paths)))
    grouping = run(current, env, "group_images.py", "--quiet")
    print("this release, grouping:", grouping.strip().replace("\n", " | "))
    after = json.loads(run(current, env, "-c", ANSWERS, stdin=json.dumps(paths)))

    failed = 0
    for label, answers in (("after the migration", migrated),
                           ("after the grouping rerun", after)):
        differing = [p for p in paths if answers[p] != before[p] and p not in LEFT_OUT]
        print(f"{label}: {len(paths) - len(differing)} of {len(paths)} answers identical"
              + (f"; differing: {differing[:10]}" if differing else ""))
        failed += len(differing)
    statuses = {status for status, _ in before.values()}
    print("statuses of the compared answers:", sorted(statuses))
    written = [line for line in grouping.splitlines() if "lists_written" in line]
    if ("new 0, changed 0" not in features or len(written) < 2
            or not all("lists_written 0" in line for line in written)):
        print("a rerun had work to do (or not both spaces were grouped)")
        failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
