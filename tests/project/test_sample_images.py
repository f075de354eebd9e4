"""The bundled sample images: small, all listed with a licence, reproducible by the tool."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_images"
SOURCES_MD = (SAMPLES / "SOURCES.md").read_text(encoding="utf-8")


def jpegs(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))


def test_every_image_is_listed_with_its_source_and_every_source_has_a_licence():
    listed = re.findall(r"^\| `([^`]+\.jpg)` \| `([^`]+)` \|", SOURCES_MD, re.M)
    assert sorted(path for path, _ in listed) == jpegs(SAMPLES)
    licences = dict(re.findall(r"^\| `([^`.]+)` \| [^|]+ \| ([^|]+) \|$", SOURCES_MD, re.M))
    for _, source in listed:
        assert re.search(r"Public domain|CC0", licences[source]), (source, licences.get(source))


def test_the_set_is_small_nested_and_holds_real_jpegs():
    paths = jpegs(SAMPLES)
    assert 20 <= len(paths) <= 40
    assert sum((SAMPLES / p).stat().st_size for p in paths) < 5_000_000
    assert any(p.count("/") >= 2 for p in paths)  # nested folders
    assert any(not p.isascii() for p in paths)  # a non-ASCII folder name, as archives have
    for path in paths:
        with Image.open(SAMPLES / path) as image:
            assert image.format == "JPEG"
            assert min(image.size) >= 64


def test_the_tool_reproduces_the_committed_files(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_sample_images.py"),
                    str(tmp_path)], check=True, capture_output=True, timeout=120)
    assert jpegs(tmp_path) == jpegs(SAMPLES)
    for path in jpegs(SAMPLES) + ["SOURCES.md"]:
        assert (tmp_path / path).read_bytes() == (SAMPLES / path).read_bytes(), path
