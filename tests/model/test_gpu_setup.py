"""The GPU requirements file: the same TensorFlow as the default set, kept out of it."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pins(name: str) -> dict[str, str]:
    """Return {package: version} of the exact pins in a requirements file."""
    found = {}
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[a-z0-9,-]+\])?==([^\s#]+)", line.strip())
        if match:
            found[match.group(1).lower()] = match.group(3)
    return found


def test_the_gpu_file_pins_the_tensorflow_of_the_default_set():
    assert pins("requirements-gpu.txt") == {"tensorflow": pins("requirements.txt")
                                            ["tensorflow-cpu"]}
    assert "tensorflow[and-cuda]==" in (ROOT / "requirements-gpu.txt").read_text()


def test_the_default_set_up_the_image_and_ci_do_not_install_it():
    for name in ("scripts/setup.sh", "Dockerfile", ".ci/run", "requirements.txt",
                 "requirements-dev.txt"):
        path = ROOT / name
        if path.exists():
            assert "requirements-gpu" not in path.read_text(encoding="utf-8"), name
