"""The app factory: read-only database access, no-schema answers, CORS, the flask CLI."""
from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import event, insert, text, update
from sqlalchemy.exc import DBAPIError

from service_support import settings_for_archive

from db import engine as db_engine
from db.engine import make_engine
from db.models import Image, ImageNeighbour
from service import create_app
from runtime.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_service_cannot_write_through_its_engine(app, archive):
    """Writes through the app's own engine fail: SQLite mode=ro, MariaDB READ ONLY."""
    engine = app.extensions["db_engine"]
    statements = [update(Image).where(Image.id == 1).values(status="failed"),
                  insert(ImageNeighbour).values(image_id=6, space=1, neighbour_id=1, distance=0.0),
                  text("CREATE TABLE intruder (id INTEGER)")]
    for statement in statements:
        with pytest.raises(DBAPIError, match="(?i)read.?only"):
            with engine.begin() as connection:
                connection.execute(statement)


def test_requests_leave_the_sqlite_file_unchanged(tmp_path):
    from service_support import build_archive
    archive = build_archive(f"sqlite:///{tmp_path / 'images.sqlite3'}", tmp_path)
    database = tmp_path / "images.sqlite3"
    before = hashlib.sha256(database.read_bytes()).hexdigest()
    application = create_app(settings_for_archive(archive, tmp_path / "thumbnails"))
    client = application.test_client()
    for url in ["/", "/images/1", "/search?q=rose", "/api/v1/images", "/api/v1/stats",
                "/api/v1/images/1/neighbours", "/image_name_and_neighbours/2",
                "/images/1/thumbnail", "/images/1/fingerprint.png"]:
        assert client.get(url).status_code in (200, 302)
    # A search by image reads every vector and writes its files, but not to the database.
    search = client.post("/api/v1/search", data=archive.files[1], content_type="image/jpeg")
    assert search.status_code == 200, search.get_json()
    assert search.get_json()["neighbours"]
    application.extensions["db_engine"].dispose()
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before


def test_a_database_without_tables_answers_503(database_url, settings_for, tmp_path):
    if database_url.startswith("sqlite"):
        sqlite3.connect(database_url.removeprefix("sqlite:///")).close()  # empty file
    application = create_app(settings_for(database_url=database_url))
    client = application.test_client()
    for url in ["/api/v1/stats", "/api/v1/images/1", "/api/v1/healthz", "/image_count",
                "/images/1/file"]:
        response = client.get(url)
        assert response.status_code == 503
        assert "no tables yet" in response.get_json()["error"]
    response = client.get("/")
    assert response.status_code == 503 and response.mimetype == "text/html"
    assert "no tables yet" in response.get_data(as_text=True)
    application.extensions["db_engine"].dispose()


def test_an_unreachable_database_answers_503(settings_for):
    url = "mysql+mysqlconnector://nobody@127.0.0.1:9/none?connection_timeout=2"
    client = create_app(settings_for(database_url=url)).test_client()
    response = client.get("/api/v1/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"error": "the database is not reachable"}


def test_cors_allows_only_the_configured_origins(archive, tmp_path):
    settings = settings_for_archive(archive, tmp_path, cors_origins="https://portal.example")
    client = create_app(settings).test_client()
    allowed = client.get("/api/v1/images/1", headers={"Origin": "https://portal.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://portal.example"
    legacy = client.get("/image_name/1", headers={"Origin": "https://portal.example"})
    assert legacy.headers["Access-Control-Allow-Origin"] == "https://portal.example"
    other = client.get("/api/v1/images/1", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    for path in ("/", "/images/1"):
        page = client.get(path, headers={"Origin": "https://portal.example"})
        assert "Access-Control-Allow-Origin" not in page.headers, path
    # Thumbnails and files too: IIIF viewers draw them on canvases (issue 25).
    for path in ("/image_count", "/image_name_and_neighbours/1", "/image_fingerprint/1",
                 "/images/1/file", "/images/1/thumbnail"):
        legacy = client.get(path, headers={"Origin": "https://portal.example"})
        assert legacy.headers["Access-Control-Allow-Origin"] == "https://portal.example"


def test_no_cors_headers_by_default(client):
    response = client.get("/api/v1/images/1", headers={"Origin": "https://portal.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_flask_cli_builds_the_app_from_the_environment(sqlite_archive, tmp_path):
    archive = sqlite_archive
    env = {**os.environ, "DATABASE_URL": archive.url, "IMAGE_ROOT": str(archive.image_root),
           "THUMBNAIL_CACHE": str(tmp_path)}
    flask = Path(sys.executable).with_name("flask")
    result = subprocess.run([str(flask), "--app", "service", "routes"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "/api/v1/images/<image_id>/neighbours" in result.stdout


def test_create_app_without_arguments_reads_the_settings(archive, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", archive.url)
    monkeypatch.setenv("THUMBNAIL_CACHE", str(tmp_path))
    application = create_app()
    assert application.config["SETTINGS"] == load_settings()
    assert application.test_client().get("/api/v1/healthz").status_code == 200
    application.extensions["db_engine"].dispose()


@pytest.mark.parametrize("url", ["/api/v1/images/1", "/images/1/fingerprint.svg",
                                 "/images/1/file", "/", "/api/v1/images/abc"])
def test_responses_forbid_content_sniffing(client, url):
    assert client.get(url).headers["X-Content-Type-Options"] == "nosniff"


def test_a_connection_that_failed_a_request_is_not_given_back_to_the_pool(tmp_path,
                                                                          settings_for):
    from db.engine import upgrade
    url = f"sqlite:///{tmp_path / 'images.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    application = create_app(settings_for(database_url=url))
    dropped = []
    event.listen(application.extensions["db_engine"].pool, "invalidate",
                 lambda dbapi_connection, _record, _error: dropped.append(dbapi_connection))
    client = application.test_client()
    assert client.get("/api/v1/images/1").status_code == 404
    assert dropped == []
    with engine.begin() as connection:  # a database error that is no disconnect
        connection.execute(text("ALTER TABLE images RENAME TO images_gone"))
    assert client.get("/api/v1/images/1").status_code == 503
    assert len(dropped) == 1
    engine.dispose()
    application.extensions["db_engine"].dispose()


def test_lookup_finds_a_path_that_is_not_utf8(tmp_path, settings_for):
    """The feature job stores such a path as text with \\xNN escapes, hashed from bytes."""
    from db.engine import make_engine, make_sessionmaker, upgrade
    raw = b"scans/caf\xe9 1.jpg"
    text_form = raw.decode("utf-8", "backslashreplace")
    url = f"sqlite:///{tmp_path / 'images.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    with make_sessionmaker(engine).begin() as session:
        session.add(Image(path=text_form, path_hash=hashlib.sha256(raw).hexdigest(),
                          file_name=text_form.rsplit("/", 1)[1], status="ok"))
    engine.dispose()
    client = create_app(settings_for(database_url=url)).test_client()
    found = client.get("/api/v1/images/lookup", query_string={"path": text_form}).get_json()
    assert [image["path"] for image in found["images"]] == ["scans/caf\\xe9 1.jpg"]
    by_name = client.get("/api/v1/images/lookup", query_string={"name": "caf\\xe9 1.jpg"})
    assert len(by_name.get_json()["images"]) == 1


def _session_counters(engine) -> dict[str, int]:
    # A test client runs one request at a time, so the pool has one connection: this.
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SHOW SESSION STATUS WHERE Variable_name IN "
            "('Com_select', 'Com_admin_commands', 'Com_rollback', 'Com_commit')").all()
    return {name: int(value) for name, value in rows}


def test_a_busy_request_costs_no_ping_at_checkout_and_no_rollback(mariadb_app, monkeypatch):
    """No checkout ping, no ROLLBACK: only what mysql-connector's public API adds to each
    request's SELECT (the ping in its cursor(), the query of the autocommit mode)."""
    monkeypatch.setattr(db_engine, "IDLE_PING_SECONDS", 60.0)  # however slow this machine
    client, engine = mariadb_app.test_client(), mariadb_app.extensions["db_engine"]
    assert client.get("/api/v1/healthz").status_code == 200
    before = _session_counters(engine)
    for _ in range(10):
        assert client.get("/api/v1/images/1/neighbours").status_code == 200
        assert client.get("/image_name_and_neighbours/2").status_code == 200
    after = _session_counters(engine)
    # 20 requests, and the reading of the counters once more.
    assert {name: after[name] - before[name] for name in after} == {
        "Com_select": 21 + 20, "Com_admin_commands": 21, "Com_rollback": 0, "Com_commit": 0}


def test_an_idle_connection_the_server_dropped_is_replaced_unseen(mariadb_app, archive):
    client, engine = mariadb_app.test_client(), mariadb_app.extensions["db_engine"]
    assert client.get("/api/v1/images/1/neighbours").status_code == 200
    _kill_pooled_connection(engine, archive.url)
    time.sleep(db_engine.IDLE_PING_SECONDS + 0.2)  # as a server restart would take
    assert client.get("/api/v1/images/1/neighbours").status_code == 200


def test_a_busy_connection_the_server_dropped_fails_one_request_at_most(mariadb_app,
                                                                        archive,
                                                                        monkeypatch):
    """Not pinged when busy: the request that finds it dropped may fail, not the next."""
    monkeypatch.setattr(db_engine, "IDLE_PING_SECONDS", 60.0)
    client, engine = mariadb_app.test_client(), mariadb_app.extensions["db_engine"]
    assert client.get("/api/v1/images/1/neighbours").status_code == 200
    _kill_pooled_connection(engine, archive.url)
    statuses = [client.get("/api/v1/images/1/neighbours").status_code for _ in range(3)]
    assert statuses in ([200, 200, 200], [503, 200, 200])


def _kill_pooled_connection(engine, url: str) -> None:
    with engine.connect() as connection:
        victim = connection.exec_driver_sql("SELECT CONNECTION_ID()").scalar()
    admin = make_engine(url)
    with admin.connect() as connection:
        connection.exec_driver_sql(f"KILL CONNECTION {int(victim)}")
    admin.dispose()


def test_json_keeps_flasks_forms_where_orjson_differs_or_refuses(app):
    with app.app_context():
        # Key order as built, dates as HTTP dates, as Flask's own encoder writes them.
        assert app.json.dumps({"b": 1, "a": datetime(2026, 1, 2, 3, 4, 5)}) == \
            '{"b":1,"a":"Fri, 02 Jan 2026 03:04:05 GMT"}'
        # orjson refuses a lone surrogate and integers past 64 bits; the standard
        # library writes them, so such a value cannot turn into a 500.
        assert app.json.loads(app.json.dumps(["\udcff", 2**70])) == ["\udcff", 2**70]
        response = app.json.response({"name": "straße"})
        assert response.get_data() == '{"name":"straße"}\n'.encode()
