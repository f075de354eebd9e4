"""SQLAlchemy models: the same schema on SQLite and MariaDB."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Double, ForeignKey, Index,
                        Integer, LargeBinary, SmallInteger, String, Text)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Image status values.
PENDING, OK, FAILED, MISSING = "pending", "ok", "failed", "missing"
STATUSES = (PENDING, OK, FAILED, MISSING)

# Spaces of neighbour lists, by name and id. pool3: Euclidean on the stored vectors, the
# replaced system's distance; whitened: the learned space (numerics/whitening.py);
# augmented: the whitened vectors augmented by their nearest (numerics/augmentation.py).
POOL3, WHITENED, AUGMENTED = "pool3", "whitened", "augmented"
SPACE_IDS = {POOL3: 1, WHITENED: 2, AUGMENTED: 3}

# Catalogue records: an external id fits a unique index whole; titles are searched by
# the start of their case-folded form.
EXTERNAL_ID_LENGTH = 255
TITLE_KEY_LENGTH = 255
WORD_LENGTH = 64  # characters of a search word kept (db/title_words.py)

# BIGINT on MariaDB, INTEGER (a rowid alias, so AUTOINCREMENT works) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")
# Microseconds on MariaDB too (SQLite keeps them anyway): the grouping job tells an image
# changed during its run by updated_at, and two changes within one second must differ.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# Browsing sorts by the bytes of a path and finds folders by theirs. MariaDB indexes at
# most 3072 bytes per key (status + key + id must fit), and its utf8mb4_bin text compares
# with trailing-space padding, so the service sorts on a VARBINARY copy of the first
# KEY_BYTES bytes. Paths that agree in their first KEY_BYTES bytes sort by id.
KEY_BYTES = 2048
Key = LargeBinary().with_variant(mysql.VARBINARY(KEY_BYTES), "mysql", "mariadb")


def path_key(path: str) -> bytes:
    """Return the sort key of a stored path: its UTF-8 bytes, at most KEY_BYTES."""
    return path.encode("utf-8", "surrogateescape")[:KEY_BYTES]


def title_key(title: str | None) -> str | None:
    """Return what the title search matches: the title case-folded, cut to fit its index."""
    return None if title is None else title.casefold()[:TITLE_KEY_LENGTH]


def folder_of(path: str) -> str:
    """Return the folder of a stored path ('' for a file at the top)."""
    return path.rpartition("/")[0]


def _path_key_default(context) -> bytes:
    # Filled from the row's path whoever inserts it (the feature job, tests, benches).
    return path_key(context.get_current_parameters()["path"])


def _folder_key_default(context) -> bytes:
    return path_key(folder_of(context.get_current_parameters()["path"]))


class Base(DeclarativeBase):
    pass


class Image(Base):
    """One row per JPEG file ever seen under IMAGE_ROOT; ids are never reused."""

    __tablename__ = "images"
    # AUTOINCREMENT keeps SQLite from handing out the id of a deleted row again.
    __table_args__ = (Index("ix_images_file_name", "file_name"),
                      Index("ix_images_status", "status"),
                      Index("ix_images_needs_grouping", "needs_grouping"),
                      # Browsing: path order, path order within a status, and the
                      # folder tree (one index seek per subfolder).
                      Index("ix_images_path_key", "path_key", "id"),
                      Index("ix_images_status_path_key", "status", "path_key", "id"),
                      Index("ix_images_folder_key", "folder_key"),
                      {"sqlite_autoincrement": True,
                       "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"})

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    # POSIX path relative to IMAGE_ROOT. Paths can be long, so uniqueness is enforced on
    # the sha256 of the path's bytes, not on the text.
    path: Mapped[str] = mapped_column(Text, nullable=False)
    path_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    file_name: Mapped[str] = mapped_column(String(255), nullable=False)
    # path_key(path) and path_key(folder_of(path)): see KEY_BYTES. Paths never change
    # (a moved file is a new image), so neither do these.
    path_key: Mapped[bytes] = mapped_column(Key, nullable=False, default=_path_key_default)
    folder_key: Mapped[bytes] = mapped_column(Key, nullable=False,
                                              default=_folder_key_default)
    size: Mapped[int | None] = mapped_column(BigInteger)
    mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=PENDING)
    error: Mapped[str | None] = mapped_column(Text)
    # Images of a IIIF collection (import_iiif.py; jobs/iiif_import/): the URL the feature
    # job fetches (NULL for a file under IMAGE_ROOT), the image service, the import
    # source, manifest and canvas they came from, the canvas label, and the validators of
    # the last fetch for conditional requests. Their path is the image's key (the
    # service id, else the resource URL), which no file under IMAGE_ROOT can have.
    source_url: Mapped[str | None] = mapped_column(Text)
    iiif_service: Mapped[str | None] = mapped_column(Text)
    iiif_source: Mapped[str | None] = mapped_column(Text)
    manifest_id: Mapped[str | None] = mapped_column(Text)
    canvas_id: Mapped[str | None] = mapped_column(Text)
    iiif_label: Mapped[str | None] = mapped_column(Text)
    http_etag: Mapped[str | None] = mapped_column(String(255))
    http_last_modified: Mapped[str | None] = mapped_column(String(64))
    # Set when the image's features appear, change or leave the grouping (status change);
    # cleared by the grouping job once every list it affects is rewritten.
    needs_grouping: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False, default=utcnow,
                                                 onupdate=utcnow)


class ImageFeatures(Base):
    """The 2048 pool_3 values of an image as little-endian float32 bytes."""

    __tablename__ = "image_features"
    # The index finds the vectors of an earlier model without reading every row.
    __table_args__ = (Index("ix_image_features_model", "model"),
                      {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"})

    image_id: Mapped[int] = mapped_column(Id, ForeignKey("images.id"), primary_key=True)
    model: Mapped[str] = mapped_column(String(64), nullable=False)
    vector: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)


class Space(Base):
    """A space the grouping job computes lists in, and how it stands."""

    __tablename__ = "spaces"
    __table_args__ = ({"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"},)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    dimensions: Mapped[int | None] = mapped_column(Integer)
    # The learned projection (numerics.whitening.Projection.to_bytes); None for pool3.
    projection: Mapped[bytes | None] = mapped_column(
        LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"))
    # What it was learned with (the settings WHITENED_DIMENSIONS and WHITENED_SHRINKAGE:
    # another value makes the next run learn it again), from how many images and when.
    whitened_dimensions: Mapped[int | None] = mapped_column(Integer)
    whitened_shrinkage: Mapped[float | None] = mapped_column(Double)
    # The augmented space's settings AUGMENTED_K and AUGMENTED_ALPHA, as its vectors were
    # computed with (the service augments uploads likewise).
    augmented_k: Mapped[int | None] = mapped_column(Integer)
    augmented_alpha: Mapped[float | None] = mapped_column(Double)
    learned_from: Mapped[int | None] = mapped_column(Integer)
    learned_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # Lists stored at the end of the last grouping run, and why there are none if so.
    lists: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    note: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
    # Where the grouping job's next run starts (jobs/grouping/plan.py): the lists of the
    # 'ok' images with ids up to valid_through are exact top-k lists for this k and, in
    # a learned space, the projection whose token is lists_projection. Written in the
    # transactions that write the lists, so a killed run leaves a true resume point;
    # None: no list is known valid.
    valid_through: Mapped[int | None] = mapped_column(BigInteger)
    k: Mapped[int | None] = mapped_column(Integer)
    lists_projection: Mapped[str | None] = mapped_column(String(64))


class ImageNeighbour(Base):
    """One entry of an image's top-k list in a space; the list's order is (distance,
    neighbour_id).

    The rank is not stored: it is the entry's position in that order. A stored rank
    would make every entry behind a newcomer move (up to k rows rewritten per list an
    incremental run touches); without it a newcomer costs one insert and one delete.
    The key is the list order itself, so a list is one range of the table in the order
    it is read, and its last entries are the end of that range. A neighbour appears once
    per list: the grouping job writes lists so (its tests check it).
    """

    __tablename__ = "image_neighbours"
    # WITHOUT ROWID on SQLite: the rows are stored in key order, as in InnoDB.
    __table_args__ = (Index("ix_image_neighbours_neighbour_id", "neighbour_id"),
                      {"sqlite_with_rowid": False,
                       "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"})

    image_id: Mapped[int] = mapped_column(Id, ForeignKey("images.id"), primary_key=True,
                                          autoincrement=False)
    # After image_id: the foreign key on image_id needs an index that starts with it,
    # and one image's lists in all spaces are neighbours in the table.
    space: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    distance: Mapped[float] = mapped_column(Double, primary_key=True)
    neighbour_id: Mapped[int] = mapped_column(Id, ForeignKey("images.id"), primary_key=True,
                                              autoincrement=False)


class NeighbourList(Base):
    """An image's list as a whole: its length and its last (k-th) entry.

    Written in the same transaction as the list's rows. The grouping job reads it to
    know, for every list, how far a new image may be and still enter it: finding the
    last entry among the rows would read all of them.
    """

    __tablename__ = "neighbour_lists"
    __table_args__ = ({"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"},)

    image_id: Mapped[int] = mapped_column(Id, ForeignKey("images.id"), primary_key=True,
                                          autoincrement=False)
    space: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    length: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    last_distance: Mapped[float] = mapped_column(Double, nullable=False)
    last_neighbour_id: Mapped[int] = mapped_column(Id, nullable=False)


class Job(Base):
    """One run of either batch job."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_kind_started_at", "kind", "started_at"),
                      {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"})

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # features | grouping
    started_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # running | completed | failed; a row left 'running' means the run was killed.
    outcome: Mapped[str] = mapped_column(String(16), nullable=False, default="running")
    # What the operator reads about the run: a JSON object of named counts. Nothing a
    # later run needs: that lives in columns (Space).
    counts: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
    # A grouping run's: the token of the local copy of the vectors it left
    # (jobs/grouping/vector_cache.py), which the next run trusts if this one completed.
    vector_cache: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)


class CatalogueRecord(Base):
    """An image's record in the archive's catalogue, imported by import_metadata.py."""

    __tablename__ = "catalogue_records"
    # title_key served the former prefix search (db/title_words.py replaced it); the
    # external id is unique.
    __table_args__ = (Index("ix_catalogue_records_title_key", "title_key"),
                      {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"})

    image_id: Mapped[int] = mapped_column(Id, ForeignKey("images.id"), primary_key=True,
                                          autoincrement=False)
    # The catalogue's own record id; at most EXTERNAL_ID_LENGTH characters, so that the
    # unique index holds it whole.
    external_id: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LENGTH), unique=True)
    title: Mapped[str | None] = mapped_column(Text)
    # The title case-folded and cut to TITLE_KEY_LENGTH characters: what search matches.
    title_key: Mapped[str | None] = mapped_column(String(TITLE_KEY_LENGTH))
    url: Mapped[str | None] = mapped_column(Text)
    # The CSV's other columns as a JSON object of strings.
    extra: Mapped[str | None] = mapped_column(Text)
    # From the CSV column `excluded`: the image is left out of the grouping.
    excluded: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False, default=utcnow,
                                                 onupdate=utcnow)


class TitleWord(Base):
    """A word of an image's catalogue title or record id (db/title_words.py), written
    with its record by import_metadata.py."""

    __tablename__ = "title_words"
    # The key serves the search (a range of words, in order); the second index the
    # per-image checks and the rewrite of an image's words.
    __table_args__ = (Index("ix_title_words_image_id_word", "image_id", "word"),
                      {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"})

    word: Mapped[str] = mapped_column(String(WORD_LENGTH), primary_key=True)
    image_id: Mapped[int] = mapped_column(Id, ForeignKey("images.id"), primary_key=True,
                                          autoincrement=False)


class GroupingExclusion(Base):
    """An image the grouping job left out of every space in its latest run.

    Stored by the run before it writes any list (jobs/grouping/exclusions.py), together with
    needs_grouping on every image whose exclusion changed, so that the next run, even
    after a killed one, knows which lists the change reaches.
    """

    __tablename__ = "grouping_exclusions"
    __table_args__ = ({"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"},)

    image_id: Mapped[int] = mapped_column(Id, ForeignKey("images.id"), primary_key=True,
                                          autoincrement=False)
    # Which source excluded it (a pattern of EXCLUDE_PATTERNS or EXCLUDE_FILE), for the
    # pages.
    reason: Mapped[str | None] = mapped_column(Text)
    excluded_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)


class AugmentationNeighbour(Base):
    """One of an image's k nearest in the whitened space, as the augmented space's
    vector of the image was last computed from them (numerics/augmentation.py).

    The grouping job's state for that space: an incremental run finds from it the
    images whose augmented vector changes. Rewritten whole when the space is computed
    whole, else for the images whose neighbours changed once their lists are written.
    """

    __tablename__ = "augmentation_neighbours"
    __table_args__ = ({"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"},)

    image_id: Mapped[int] = mapped_column(Id, ForeignKey("images.id"), primary_key=True,
                                          autoincrement=False)
    # 0 for the nearest; in list order (distance, then neighbour id).
    position: Mapped[int] = mapped_column(SmallInteger, primary_key=True,
                                          autoincrement=False)
    neighbour_id: Mapped[int] = mapped_column(Id, nullable=False)
