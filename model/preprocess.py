"""JPEG bytes to the network's input, exactly as the 2015 graph prepared its images.

The original graph decoded with `DecodeJpeg` (channels 3, no `dct_method` attribute, so
the kernel's default: libjpeg's IFAST IDCT, fancy upsampling on), cast to float, resized
with TF1's `ResizeBilinear` (align_corners=False, half_pixel_centers=False) to 299x299,
then computed (x - 128) * (1/128). The same TF ops run here: `tf.io.decode_jpeg` is that
DecodeJpeg kernel (it also turns grayscale and CMYK/YCCK JPEGs into RGB), and
`tf.raw_ops.ResizeBilinear` keeps the TF1 sampling grid. Decoding with the accurate IDCT
(ISLOW) instead moves the vectors measurably (cosine down to 0.989 on real photos), so
the decoder's attributes are those of the graph's node, not the "better" ones.
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


def _decode(data):
    # The graph's DecodeJpeg node: every attribute at the kernel's default, spelled out.
    # dct_method "" is TensorFlow's own choice, IFAST; try_recover_truncated=False and
    # acceptable_fraction=1 make a truncated file an error instead of an image padded
    # with grey rows.
    return tf.io.decode_jpeg(data, channels=3, ratio=1, fancy_upscaling=True,
                             try_recover_truncated=False, acceptable_fraction=1.0,
                             dct_method="")


@tf.function(input_signature=[tf.TensorSpec((), tf.string)], autograph=False)
def _decode_and_resize(data):
    pixels = _decode(data)
    shape = tf.shape(pixels)
    # ResizeBilinear takes uint8 and returns float32, bit-identical to resizing a float
    # copy; a float copy of a 200-megapixel scan would take 2.4 GB per decode thread.
    resized = tf.raw_ops.ResizeBilinear(
        images=pixels[tf.newaxis], size=[INPUT_SIZE, INPUT_SIZE],
        align_corners=False, half_pixel_centers=False)[0]
    # 1/128 is a power of two: multiplying equals the graph's Sub-then-Mul exactly.
    return (resized - 128.0) * (1.0 / 128.0), shape[1], shape[0]


def _tf_reason(error: tf.errors.OpError) -> str:
    """Return the kernel's own words from a graph-execution error, without the stack."""
    lines = [line.strip() for line in (error.message or "").splitlines()]
    lines = [line for line in lines if line and not line.startswith(
        ("Graph execution error", "Detected at", "File ", "[["))]
    return lines[-1].split(" [[")[0].split(" [Op:")[0] if lines else "unknown error"


# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic).
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7,
                          0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers without a length field.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


def jpeg_header(data: bytes) -> tuple[int, int, int]:
    """Return (width, height, bits per sample) from the JPEG's frame header; raise ImageError."""
    if not data:
        raise ImageError("empty file")
    if not data.startswith(_JPEG_MAGIC):
        raise ImageError("not a JPEG")
    # Walk the marker segments up to the frame header; nothing is decoded, so a huge
    # image costs no memory before the pixel guard has seen its size.
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            break
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _STANDALONE:
            position += 2
            continue
        length = int.from_bytes(data[position + 2:position + 4], "big")
        if marker in _SOF_MARKERS:
            if length < 8 or position + 10 > len(data):
                break
            bits = data[position + 4]
            height = int.from_bytes(data[position + 5:position + 7], "big")
            width = int.from_bytes(data[position + 7:position + 9], "big")
            return width, height, bits
        if marker == 0xDA or length < 2:  # scan data before any frame header
            break
        position += 2 + length
    raise ImageError("unreadable JPEG header")


def decode_pixels(data: bytes) -> np.ndarray:
    """Return the (height, width, 3) uint8 RGB pixels of a JPEG, decoded as the graph did."""
    return _decode(tf.constant(data)).numpy()


def load_image(data: bytes, max_pixels: int) -> tuple[np.ndarray, int, int]:
    """Return the (299, 299, 3) float32 network input, width and height of a JPEG."""
    width, height, bits = jpeg_header(data)
    if bits != 8:
        raise ImageError(f"unsupported JPEG bit depth ({bits}-bit; only 8-bit)")
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
        raise ImageError("corrupt JPEG data: " + reason) from None
    return image.numpy(), int(decoded_width), int(decoded_height)
