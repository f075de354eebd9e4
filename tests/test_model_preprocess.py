"""JPEG bytes to network input: TF1 resize semantics, colour handling, bad input."""
from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.preprocess import ImageError, load_image

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
MAX = 10**8


def _jpeg(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def _tf1_resize(image: np.ndarray, size: int, half_pixel_centers: bool) -> np.ndarray:
    """Resize like TF1's ResizeBilinear (align_corners=False), written out in numpy."""
    height, width = image.shape[:2]

    def grid(n_in):
        scale = np.float32(n_in) / np.float32(size)
        out = np.arange(size, dtype=np.float32)
        source = (out + 0.5) * scale - 0.5 if half_pixel_centers else out * scale
        low = np.clip(np.floor(source).astype(int), 0, n_in - 1)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, (source - np.floor(source)).astype(np.float32)

    y0, y1, dy = grid(height)
    x0, x1, dx = grid(width)
    image = image.astype(np.float32)
    top = image[y0][:, x0] + (image[y0][:, x1] - image[y0][:, x0]) * dx[None, :, None]
    bottom = image[y1][:, x0] + (image[y1][:, x1] - image[y1][:, x0]) * dx[None, :, None]
    return top + (bottom - top) * dy[:, None, None]


def test_resize_is_tf1_bilinear_without_half_pixel_centers():
    # Constant 8x8 blocks in a grayscale JPEG at quality 100 decode exactly (DC only,
    # quantiser 1), so the expected 299x299 input can be computed by hand.
    blocks = np.array([[10, 200, 90], [250, 40, 128]], dtype=np.uint8)
    gray = np.kron(blocks, np.ones((8, 8), dtype=np.uint8))       # 16 x 24
    image, width, height = load_image(_jpeg(gray, quality=100), MAX)
    assert (width, height) == (24, 16)
    assert image.shape == (299, 299, 3) and image.dtype == np.float32

    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    expected = (_tf1_resize(rgb, 299, half_pixel_centers=False) - 128) / 128
    np.testing.assert_allclose(image, expected, rtol=0, atol=1e-6)
    # The other sampling grid gives a clearly different picture: the test can fail.
    other = (_tf1_resize(rgb, 299, half_pixel_centers=True) - 128) / 128
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
