"""A small, deterministic archive for the service tests, on SQLite and on MariaDB.

Real JPEG files (seeded noise and shapes, one with an EXIF orientation), image rows in
every status, seeded feature vectors and neighbour lists by float64 brute force, and job
rows, all written through the models after the migrations. The service only reads, so
one archive per test module and database is shared by that module's tests (the
fixtures are in conftest.py).
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from db.engine import make_engine, make_sessionmaker, upgrade
from db.models import FAILED, MISSING, OK, PENDING, POOL3, SPACE_IDS, WHITENED, Image, \
    ImageFeatures, ImageNeighbour, Job, Space
from db.paths import text_hash as path_hash
from numerics.vectors import DIMENSIONS, MODEL_NAME, encode_vector
from runtime.settings import load_settings
import oracle

SEED = 20151205


@dataclass(frozen=True)
class Spec:
    path: str
    status: str = OK
    features: bool = True   # a vector is stored
    grouped: bool = True    # takes part in the neighbour lists
    file: str = "jpeg"      # jpeg | garbage | none
    orientation: int = 1    # EXIF orientation tag of the JPEG
    error: str | None = None


# Ids are 1.. in this order.
SPECS = (
    Spec("flowers/rose.jpg"),
    Spec("flowers/tulip.jpg"),
    Spec("a/duplicate.jpg"),
    Spec("b/duplicate.jpg"),
    Spec("Nachlass Müller/straße 1.jpg", orientation=6),  # stored landscape, shown portrait
    Spec("new/fresh.jpg", grouped=False),                   # features, no neighbours yet
    Spec("broken/corrupt.jpg", FAILED, False, False, "garbage",
         error="cannot identify image file"),
    Spec("gone/lost.jpg", MISSING, False, False, "none"),
    Spec("queue/waiting.jpg", PENDING, False, False),
    Spec("../outside.jpg", FAILED, False, False, "none", error="test: leaves the root"),
    Spec("link/escape.jpg", FAILED, False, False, "none", error="test: symlink"),
)
OUTSIDE_ID, SYMLINK_ID = 10, 11
JPEG_SIZE = (600, 400)  # width, height as stored

# test_browse's archive (tests/service/conftest.py's browse_archive): folders to walk.
LONG = "Ärchiv ünd Ümläute " * 10  # 190 characters, 220 bytes: one folder name
# Paths past KEY_BYTES that agree in their first KEY_BYTES bytes: by id among themselves.
DEEP = "/".join(["Tiefe " + "ß" * 100] * 10)  # 10 folders of 206 bytes
BROWSE_SPECS = SPECS + (
    Spec("a b/space.jpg"), Spec("a-b/dash.jpg"), Spec("a/inner/deeper/x.jpg"),
    Spec("a/inner/y.jpg", FAILED, False, False, "garbage", error="broken"),
    Spec("a/z.jpg"), Spec("a/inner-b/q.jpg"), Spec("a/inner.old/r.jpg"),
    Spec("Nachlass Müller/Kasten 2/brief.jpg"), Spec("Nachlass Müller/Kasten 10/karte.jpg"),
    Spec(f"{LONG}/{LONG}/lang.jpg"), Spec(f"{LONG}/kurz.jpg", PENDING, False, False),
    Spec(f"{DEEP}/zweite.jpg"), Spec(f"{DEEP}/erste.jpg"),
    Spec("top.jpg"), Spec("Zebra/ü.jpg"), Spec("Zebra/u.jpg"),
) + tuple(Spec(f"series/photo_{n:02d}.jpg") for n in range(1, 12))


@dataclass
class Archive:
    """What the fixture wrote, for the tests to compare against."""

    url: str
    image_root: Path
    specs: tuple[Spec, ...] = SPECS
    vectors: dict[int, np.ndarray] = field(default_factory=dict)
    neighbours: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    # The lists of the learned space, or None where the archive has none.
    whitened: dict[int, list[tuple[int, float]]] | None = None
    files: dict[int, bytes] = field(default_factory=dict)

    def ids(self, **where) -> list[int]:
        """Return the ids of the images whose Spec has these field values."""
        return [i for i, s in enumerate(self.specs, 1)
                if all(getattr(s, k) == v for k, v in where.items())]


def jpeg_bytes(rng: np.random.Generator, orientation: int) -> bytes:
    """Return a JPEG of smooth seeded colours with a white square in one corner."""
    width, height = JPEG_SIZE
    coarse = rng.integers(0, 200, size=(8, 12, 3), dtype=np.uint8)
    picture = PILImage.fromarray(coarse, "RGB").resize(JPEG_SIZE, PILImage.Resampling.BILINEAR)
    # The white square marks the top-left corner, to check the EXIF rotation.
    picture.paste((255, 255, 255), (0, 0, width // 6, width // 6))
    exif = PILImage.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def brute_force(vectors: dict[int, np.ndarray], k: int) -> dict[int, list[tuple[int, float]]]:
    """Return each image's k nearest others by the oracle: [(id, distance), ...]."""
    ids = sorted(vectors)
    lists = oracle.all_lists(ids, np.stack([vectors[i] for i in ids]), k)
    return {i: list(zip(*lists.get(i, ([], [])))) for i in ids}


def whitened_vector(vector: np.ndarray) -> np.ndarray:
    """Return a stand-in for the learned space: other distances, another order."""
    part = np.sqrt(vector[:16].astype(np.float64))
    return part / np.linalg.norm(part)


def build_archive(url: str, root: Path, specs: tuple[Spec, ...] = SPECS,
                  whitened: bool = True) -> Archive:
    """Write the files under `root` and the rows into the database at `url`; with
    `whitened`, lists in the learned space too (from a stand-in projection)."""
    rng = np.random.default_rng(SEED)
    image_root = root / "images"
    image_root.mkdir(parents=True)
    (root / "outside.jpg").write_bytes(b"outside the image root")
    archive = Archive(url=url, image_root=image_root, specs=specs)
    engine = make_engine(url)
    upgrade(engine)
    created = datetime(2026, 11, 1, 12, 0, 0)
    with make_sessionmaker(engine).begin() as session:
        for image_id, spec in enumerate(specs, 1):
            data = None
            target = image_root / spec.path
            if spec.file in ("jpeg", "garbage"):
                data = jpeg_bytes(rng, spec.orientation) if spec.file == "jpeg" \
                    else b"this is not a JPEG file"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                archive.files[image_id] = data
            width, height = JPEG_SIZE if spec.file == "jpeg" else (None, None)
            session.add(Image(
                id=image_id, path=spec.path, path_hash=path_hash(spec.path),
                file_name=spec.path.rsplit("/", 1)[-1],
                size=len(data) if data else None, mtime_ns=1_700_000_000_000_000_000,
                content_hash=hashlib.sha256(data).hexdigest() if data else None,
                width=width, height=height, status=spec.status, error=spec.error,
                needs_grouping=spec.features and not spec.grouped,
                created_at=created, updated_at=created))
            if spec.features:
                vector = np.abs(rng.normal(0.0, 0.5, DIMENSIONS)).astype(np.float32)
                archive.vectors[image_id] = vector
        session.flush()
        for image_id, vector in archive.vectors.items():
            session.add(ImageFeatures(image_id=image_id, model=MODEL_NAME,
                                      vector=encode_vector(vector), created_at=created))
        grouped = {i: v for i, v in archive.vectors.items() if specs[i - 1].grouped}
        archive.neighbours = brute_force(grouped, k=100)
        spaces = {POOL3: archive.neighbours}
        if whitened:
            archive.whitened = spaces[WHITENED] = brute_force(
                {i: whitened_vector(v) for i, v in grouped.items()}, k=100)
            session.add(Space(id=SPACE_IDS[WHITENED], name=WHITENED, dimensions=16,
                              whitened_dimensions=16, whitened_shrinkage=0.5,
                              learned_from=len(grouped), learned_at=created,
                              lists=len(archive.whitened), updated_at=created))
        for space, lists in spaces.items():
            for image_id, entries in lists.items():
                session.add_all(ImageNeighbour(image_id=image_id, space=SPACE_IDS[space],
                                               neighbour_id=n, distance=d)
                                for n, d in entries)
        session.add_all([
            Job(kind="features", started_at=datetime(2026, 11, 1, 10), outcome="completed",
                finished_at=datetime(2026, 11, 1, 10, 5),
                counts={"new": 9, "failed": 1}),
            Job(kind="grouping", started_at=datetime(2026, 11, 1, 9), outcome="failed",
                finished_at=datetime(2026, 11, 1, 9, 1), message="killed"),
            Job(kind="grouping", started_at=datetime(2026, 11, 1, 11), outcome="completed",
                finished_at=datetime(2026, 11, 1, 11, 2), counts={"lists": 5})])
    engine.dispose()
    (image_root / "link").mkdir()
    os.symlink(root / "outside.jpg", image_root / "link" / "escape.jpg")
    return archive


def settings_for_archive(archive: Archive, cache: Path, **overrides):
    """Return Settings pointing at the archive, ignoring the developer's environment."""
    values = {"DATABASE_URL": archive.url, "IMAGE_ROOT": str(archive.image_root),
              "THUMBNAIL_CACHE": str(cache), "SEARCH_CACHE": str(cache / "search"),
              "SEARCH_PRELOAD": "0"}
    values.update({k.upper(): str(v) for k, v in overrides.items()})
    return load_settings(values, env={}, env_file=None)

