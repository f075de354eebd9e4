"""The Keras port of Inception v3: golden vectors, weight cache, features of real photos."""
from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from numerics.vectors import DIMENSIONS, MODEL_NAME
from model import load_extractor
from model.extractor import cache_is_current, load_network
from model.network import build_network
from model.preprocess import load_image

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
MAX = 10**8


def _inputs(datas):
    return np.stack([load_image(data, MAX)[0] for data in datas])


def test_golden_vectors_match_the_reference_model(cold_extractor):
    golden = np.load(GOLDEN / "golden.npz")
    loaded = [load_image((GOLDEN / name).read_bytes(), MAX) for name in golden["names"]]
    inputs = np.stack([image for image, _, _ in loaded])
    # The inputs the reference made from the files by another path (djpeg's IFAST
    # decoding, a numpy resize): a mismatch here is in the preprocessing, not the network.
    assert [w for _, w, _ in loaded] == list(golden["widths"])
    np.testing.assert_allclose(inputs.mean(axis=(1, 2, 3), dtype=np.float64),
                               golden["input_means"], atol=1e-6)
    np.testing.assert_allclose(inputs[:, [0, 0, 298, 298, 150], [0, 298, 0, 298, 150], :],
                               golden["input_corners"], atol=1e-5)

    vectors = cold_extractor(inputs)
    reference = golden["vectors"]
    assert vectors.shape == (len(reference), DIMENSIONS) and vectors.dtype == np.float32
    assert np.abs(vectors - reference).max() <= 1e-4
    cosine = (vectors * reference).sum(1) / np.linalg.norm(vectors, axis=1) \
        / np.linalg.norm(reference, axis=1)
    assert cosine.min() >= 0.99999
    # One at a time gives the same vectors as a batch.
    single = np.concatenate([cold_extractor(inputs[i:i + 1]) for i in range(2)])
    np.testing.assert_allclose(single, vectors[:2], atol=1e-5)


def test_network_has_the_graph_names():
    model, convs = build_network()
    names = {layer.name for layer in model.layers}
    assert {"conv", "conv_4", "pool0", "pool1", "mixed", "mixed_10", "pool_3",
            "mixed_10.tower_2.pool", "mixed_9.tower_1.mixed.conv_1.batchnorm"} <= names
    assert len(convs) == 94
    assert type(model.get_layer("mixed_10.tower_2.pool")).__name__ == "MaxPooling2D"
    assert type(model.get_layer("mixed_9.tower_2.pool")).__name__ == "AveragePooling2D"
    assert model.get_layer("conv.batchnorm").epsilon == 0.001
    assert model.get_layer("conv.batchnorm").scale is False
    assert model.output.shape == (None, DIMENSIONS)


def test_extractor_interface(cold_extractor):
    assert cold_extractor.name == MODEL_NAME
    assert cold_extractor(np.zeros((0, 299, 299, 3), np.float32)).shape == (0, DIMENSIONS)
    with pytest.raises(ValueError, match=r"\(n, 299, 299, 3\)"):
        cold_extractor(np.zeros((1, 224, 224, 3), np.float32))


def test_cache_is_reused_when_warm_and_rebuilt_when_stale(cold_extractor, cache_path,
                                                          tmp_path, caplog):
    assert cache_is_current(cache_path)
    modified = cache_path.stat().st_mtime_ns
    reference = cold_extractor(_inputs([(GOLDEN / "coffee.jpg").read_bytes()]))

    with caplog.at_level(logging.INFO, logger="model.extractor"):
        warm = load_extractor(cache_path)
    assert "warm start" in caplog.text and "cold start" not in caplog.text
    assert cache_path.stat().st_mtime_ns == modified
    np.testing.assert_array_equal(warm(_inputs([(GOLDEN / "coffee.jpg").read_bytes()])),
                                  reference)

    # Built from another archive version: stale, rebuilt, and then current again.
    stale = tmp_path / "stale.weights.h5"
    shutil.copy(cache_path, stale)
    with h5py.File(stale, "a") as file:
        file.attrs["archive_sha1"] = "0" * 40
    assert not cache_is_current(stale)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="model.extractor"):
        load_network(stale)
    assert "stale" in caplog.text and "cold start" in caplog.text
    assert cache_is_current(stale)
    assert not list(tmp_path.glob(".tmp-*")), "temporary file left behind"


def test_damaged_cache_is_rebuilt(tmp_path, caplog):
    damaged = tmp_path / "damaged.weights.h5"
    damaged.write_bytes(b"\x89HDF\r\n\x1a\n half a file")
    with caplog.at_level(logging.INFO, logger="model.extractor"):
        load_network(damaged)
    assert "cold start" in caplog.text
    assert cache_is_current(damaged)
    # Readable by other users (the Docker image converts as root, runs unprivileged).
    assert damaged.stat().st_mode & 0o044 == 0o044


def _variants(path: Path) -> list[bytes]:
    """Return a photo's crop and its half-size copy, each re-encoded as JPEG."""
    image = Image.open(path)
    width, height = image.size
    crop = image.crop((width // 10, height // 10, width - width // 10, height - height // 10))
    half = image.resize((width // 2, height // 2), Image.Resampling.BILINEAR)
    out = []
    for variant in (crop, half):
        buffer = io.BytesIO()
        variant.save(buffer, "JPEG", quality=80)
        out.append(buffer.getvalue())
    return out


def test_crops_and_rescales_are_nearer_than_other_photos(cold_extractor):
    names = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg", "camera.jpg"]
    originals = cold_extractor(_inputs([(GOLDEN / n).read_bytes() for n in names]))
    for index in (0, 1):  # the astronaut and the cat
        variants = cold_extractor(_inputs(_variants(GOLDEN / names[index])))
        to_original = np.linalg.norm(variants - originals[index], axis=1)
        others = np.delete(originals, index, axis=0)
        for variant, distance in zip(variants, to_original):
            nearest_other = np.linalg.norm(others - variant, axis=1).min()
            assert distance < 0.75 * nearest_other, (names[index], distance, nearest_other)
