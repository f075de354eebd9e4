"""JPEG bytes to network input: libjpeg's IFAST decoding, TF1 resize semantics, colour
handling, bad input."""
from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.preprocess import ImageError, decode_pixels, load_image
from reference import djpeg_pixels, tf1_resize

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
SAMPLES = Path(__file__).resolve().parents[2] / "sample_images"
MAX = 10**8


def _jpeg(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def _variants() -> dict[str, bytes]:
    """Return JPEGs of one photo in the layouts archives hold."""
    photo = np.asarray(Image.open(GOLDEN / "coffee.jpg"))
    cmyk = io.BytesIO()
    Image.fromarray(photo).convert("CMYK").save(cmyk, "JPEG", quality=90)
    return {"baseline 4:2:0": _jpeg(photo, quality=90),
            "progressive": _jpeg(photo, quality=90, progressive=True),
            "4:4:4": _jpeg(photo, quality=95, subsampling=0),
            "4:2:2": _jpeg(photo, quality=80, subsampling=1),
            "odd size, not whole blocks": _jpeg(photo[:101, :77], quality=75),
            "grayscale": _jpeg(photo.mean(axis=2).astype(np.uint8), quality=90),
            # Pillow writes Adobe CMYK with K = 0 (stored as 255): no rounding in the
            # conversion to RGB, so djpeg's RGB and TensorFlow's agree exactly.
            "CMYK": cmyk.getvalue()}


@pytest.mark.parametrize("name", list(_variants()))
def test_decoding_is_libjpeg_ifast(djpeg, name):
    data = _variants()[name]
    pixels = decode_pixels(data)
    np.testing.assert_array_equal(pixels, djpeg_pixels(data, "fast"))
    # The accurate IDCT gives other pixels: the comparison tells the two apart.
    assert (pixels != djpeg_pixels(data, "int")).mean() > 0.05


def test_sample_and_golden_photos_decode_as_libjpeg_ifast(djpeg):
    files = sorted(SAMPLES.rglob("*.jpg")) + sorted(GOLDEN.glob("*.jpg"))
    assert len(files) >= 30
    for path in files:
        data = path.read_bytes()
        np.testing.assert_array_equal(decode_pixels(data), djpeg_pixels(data, "fast"),
                                      err_msg=str(path))


def test_cmyk_with_black_converts_as_tensorflow_documents(djpeg):
    # With a varying K the conversion rounds: TensorFlow computes c·k/255 truncated
    # (jpeg_mem.cc), djpeg rounds it. The IDCT's differences are larger than that.
    photo = np.asarray(Image.open(GOLDEN / "coffee.jpg")).astype(int)
    cmyk = np.zeros(photo.shape[:2] + (4,), np.uint8)
    cmyk[..., :3] = 255 - photo
    cmyk[..., 3] = (np.arange(photo.shape[1]) * 255 // photo.shape[1])[None, :]
    buffer = io.BytesIO()
    Image.fromarray(cmyk, "CMYK").save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    pixels = decode_pixels(data).astype(int)
    for dct, inside in (("fast", True), ("int", False)):
        difference = djpeg_pixels(data, dct) - pixels
        assert ((difference >= 0) & (difference <= 1)).all() == inside, dct


def test_resize_is_tf1_bilinear_without_half_pixel_centers():
    # Constant 8x8 blocks in a grayscale JPEG at quality 100 decode exactly (DC only,
    # quantiser 1), so the expected 299x299 input can be computed by hand.
    blocks = np.array([[10, 200, 90], [250, 40, 128]], dtype=np.uint8)
    gray = np.kron(blocks, np.ones((8, 8), dtype=np.uint8))       # 16 x 24
    image, width, height = load_image(_jpeg(gray, quality=100), MAX)
    assert (width, height) == (24, 16)
    assert image.shape == (299, 299, 3) and image.dtype == np.float32

    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    expected = (tf1_resize(rgb, 299, half_pixel_centers=False) - 128) / 128
    np.testing.assert_allclose(image, expected, rtol=0, atol=1e-6)
    # The other sampling grid gives a clearly different picture: the test can fail.
    other = (tf1_resize(rgb, 299, half_pixel_centers=True) - 128) / 128
    assert np.abs(image - other).max() > 0.05
    # Corner pixel by hand: output (0, 0) samples input (0, 0) exactly.
    assert image[0, 0, 0] == pytest.approx((10 - 128) / 128, abs=1e-7)
    # Output row 0, column 298 samples x = 298 * 24/299 = 23.92: inside the last block.
    assert image[0, 298, 0] == pytest.approx((90 - 128) / 128, abs=1e-7)


def test_grayscale_and_cmyk_give_rgb():
    rng = np.random.default_rng(7)
    colour = np.zeros((64, 48, 3), dtype=np.uint8)
    colour[..., 0] = 230                                   # red
    colour[..., 1:] = rng.integers(0, 20, (64, 48, 2))
    gray_image, _, _ = load_image(_jpeg(colour[..., 0]), MAX)
    assert gray_image.shape == (299, 299, 3)
    np.testing.assert_array_equal(gray_image[..., 0], gray_image[..., 1])
    np.testing.assert_array_equal(gray_image[..., 0], gray_image[..., 2])

    cmyk = io.BytesIO()
    Image.fromarray(colour).convert("CMYK").save(cmyk, "JPEG", quality=95)
    cmyk_image, width, height = load_image(cmyk.getvalue(), MAX)
    rgb_image, _, _ = load_image(_jpeg(colour, quality=95), MAX)
    assert (width, height) == (48, 64) and cmyk_image.shape == (299, 299, 3)
    # Red stays red: channel means close to the RGB JPEG's, not inverted or swapped.
    np.testing.assert_allclose(cmyk_image.mean(axis=(0, 1)), rgb_image.mean(axis=(0, 1)),
                               atol=0.05)
    assert cmyk_image[..., 0].mean() > 0.7 and cmyk_image[..., 1].mean() < -0.7


def test_progressive_decodes_like_baseline():
    photo = np.asarray(Image.open(GOLDEN / "coffee.jpg"))
    baseline, _, _ = load_image(_jpeg(photo, quality=90), MAX)
    progressive, _, _ = load_image(_jpeg(photo, quality=90, progressive=True), MAX)
    np.testing.assert_allclose(progressive, baseline, atol=1e-6)


def test_size_is_the_original_size():
    _, width, height = load_image((GOLDEN / "rocket.jpg").read_bytes(), MAX)
    assert (width, height) == Image.open(GOLDEN / "rocket.jpg").size


def _twelve_bit(data: bytes) -> bytes:
    marker = data.index(b"\xff\xc0")
    patched = bytearray(data)
    patched[marker + 4] = 12
    return bytes(patched)


PHOTO = (GOLDEN / "chelsea.jpg").read_bytes()


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"GIF89a" + bytes(100), "not a JPEG"),
    (Path(__file__).read_bytes(), "not a JPEG"),
    (b"\xff\xd8\xff", "unreadable JPEG header"),
    (PHOTO[:len(PHOTO) // 2], "truncated JPEG"),
    (PHOTO[:-2], "truncated JPEG"),
    (PHOTO[:PHOTO.index(b"\xff\xda") + 20], "truncated JPEG"),
    (_twelve_bit(PHOTO), "unsupported JPEG bit depth (12-bit"),
])
def test_bad_input_is_an_image_error(data, reason):
    with pytest.raises(ImageError) as error:
        load_image(data, MAX)
    assert str(error.value).startswith(reason)


def test_png_is_not_decoded_as_jpeg():
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, "PNG")
    with pytest.raises(ImageError, match="not a JPEG"):
        load_image(buffer.getvalue(), MAX)


def test_too_many_pixels_is_refused_before_decoding():
    # A header claiming 60000x60000 with no image data behind it: only the header is read.
    header = PHOTO[:PHOTO.index(b"\xff\xc0") + 5] + (60000).to_bytes(2, "big") * 2 + \
        PHOTO[PHOTO.index(b"\xff\xc0") + 9:PHOTO.index(b"\xff\xda")]
    with pytest.raises(ImageError, match=r"too many pixels \(60000x60000 = 3600000000 > "
                                         r"MAX_IMAGE_PIXELS 200000000\)"):
        load_image(header, 200_000_000)
    with pytest.raises(ImageError, match="too many pixels"):
        load_image(PHOTO, 451 * 300 - 1)
    load_image(PHOTO, 451 * 300)


def test_threads_give_the_same_result():
    files = [p.read_bytes() for p in sorted(GOLDEN.glob("*.jpg"))] * 3
    serial = [load_image(data, MAX)[0] for data in files]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda data: load_image(data, MAX)[0], files))
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a, b)
