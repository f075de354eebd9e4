"""JPEG bytes to the network's input, exactly as the 2015 graph prepared its images.

The original graph decoded with `DecodeJpeg` (channels 3; libjpeg ISLOW IDCT, fancy
upsampling), cast to float, resized with TF1's `ResizeBilinear` (align_corners=False,
half_pixel_centers=False) to 299x299, then computed (x - 128) * (1/128). The same TF ops
run here: `tf.io.decode_jpeg` is that DecodeJpeg kernel (it also turns grayscale and
CMYK/YCCK JPEGs into RGB), and `tf.raw_ops.ResizeBilinear` keeps the TF1 sampling grid.
TF ops run in C++ without the GIL, so a thread pool can preprocess while the model runs.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from model.network import INPUT_SIZE

_JPEG_MAGIC = b"\xff\xd8\xff"
_END_OF_IMAGE = b"\xff\xd9"


class ImageError(Exception):
    """A file that cannot be used; str() is a short reason for images.error."""


@tf.function(input_signature=[tf.TensorSpec((), tf.string)], autograph=False)
def _decode_and_resize(data):
    # try_recover_truncated=False and acceptable_fraction=1 (the defaults) make a
    # truncated file an error instead of an image padded with grey rows.
    pixels = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE",
                               fancy_upscaling=True, try_recover_truncated=False,
                               acceptable_fraction=1.0)
    shape = tf.shape(pixels)
    resized = tf.raw_ops.ResizeBilinear(
        images=tf.cast(pixels, tf.float32)[tf.newaxis], size=[INPUT_SIZE, INPUT_SIZE],
        align_corners=False, half_pixel_centers=False)[0]
    # 1/128 is a power of two: multiplying equals the graph's Sub-then-Mul exactly.
    return (resized - 128.0) * (1.0 / 128.0), shape[1], shape[0]


def _tf_reason(error: tf.errors.OpError) -> str:
    """Return the kernel's own words from a graph-execution error, without the stack."""
    lines = [line.strip() for line in (error.message or "").splitlines()]
    lines = [line for line in lines if line and not line.startswith(
        ("Graph execution error", "Detected at", "File ", "[["))]
    return lines[-1].split(" [[")[0].split(" [Op:")[0] if lines else "unknown error"


def jpeg_size(data: bytes) -> tuple[int, int]:
    """Return (width, height) read from the JPEG header, without decoding; raise ImageError."""
    if not data:
        raise ImageError("empty file")
    if not data.startswith(_JPEG_MAGIC):
        raise ImageError("not a JPEG")
    try:
        height, width, _ = tf.io.extract_jpeg_shape(data).numpy()
    except tf.errors.InvalidArgumentError:
        raise ImageError("unreadable JPEG header") from None
    return int(width), int(height)


def load_image(data: bytes, max_pixels: int) -> tuple[np.ndarray, int, int]:
    """Return the (299, 299, 3) float32 network input, width and height of a JPEG."""
    width, height = jpeg_size(data)
    if width * height > max_pixels:
        raise ImageError(f"too many pixels ({width}x{height} = {width * height} > "
                         f"MAX_IMAGE_PIXELS {max_pixels})")
    if width == 0 or height == 0:
        raise ImageError("JPEG has no pixels")
    try:
        image, decoded_width, decoded_height = _decode_and_resize(tf.constant(data))
    except tf.errors.InvalidArgumentError as error:
        if _END_OF_IMAGE not in data[-64:]:
            raise ImageError("truncated JPEG") from None
        reason = _tf_reason(error)
        if "precision" in reason.lower():
            raise ImageError("unsupported JPEG bit depth (only 8-bit)") from None
        raise ImageError("corrupt JPEG data: " + reason) from None
    return image.numpy(), int(decoded_width), int(decoded_height)
