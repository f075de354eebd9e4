"""The model tests' fixtures."""
from __future__ import annotations

import os

import pytest

from model import Extractor, load_extractor
from reference import djpeg_path


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory):
    return tmp_path_factory.mktemp("model") / "inception.weights.h5"


@pytest.fixture(scope="module")
def cold_extractor(cache_path) -> Extractor:
    """Convert the weights once (cold start) into a cache private to the module using it
    (not the jobs tests' extractor, which shares the project's cache)."""
    return load_extractor(cache_path)


@pytest.fixture(scope="module")
def djpeg():
    """Debian's djpeg; without it the decoding tests skip, unless REQUIRE_DJPEG=1 (CI)."""
    if djpeg_path() is None:
        message = "djpeg not found; install Debian's libjpeg-turbo-progs"
        if os.environ.get("REQUIRE_DJPEG") == "1":
            pytest.fail(message)
        pytest.skip(message)
