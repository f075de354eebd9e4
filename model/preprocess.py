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

`load_upload` is the service's entry (search by an uploaded image): a JPEG goes through
`load_image`, the very path of the feature job, so an uploaded copy of an archive JPEG
gets its stored vector back; a PNG is decoded to 8-bit RGB by TensorFlow's DecodePng and
then resized and scaled by the same function as a JPEG.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from model.network import INPUT_SIZE

_JPEG_MAGIC = b"\xff\xd8\xff"
_END_OF_IMAGE = b"\xff\xd9"


class ImageError(Exception):
    """A file that cannot be used; str() is a short reason for images.error."""


class UnsupportedImage(ImageError):
    """An image in a format or depth that is not decoded (the service answers 415)."""


class TooManyPixels(ImageError):
    """An image over the pixel cap, refused before decoding (the service answers 413)."""


def _decode(data):
    # The graph's DecodeJpeg node: every attribute at the kernel's default, spelled out.
    # dct_method "" is TensorFlow's own choice, IFAST; try_recover_truncated=False and
    # acceptable_fraction=1 make a truncated file an error instead of an image padded
    # with grey rows.
    return tf.io.decode_jpeg(data, channels=3, ratio=1, fancy_upscaling=True,
                             try_recover_truncated=False, acceptable_fraction=1.0,
                             dct_method="")


def _resize(pixels):
    """Return the (299, 299, 3) network input and width, height of uint8 RGB pixels."""
    shape = tf.shape(pixels)
    # ResizeBilinear takes uint8 and returns float32, bit-identical to resizing a float
    # copy; a float copy of a 200-megapixel scan would take 2.4 GB per decode thread.
    resized = tf.raw_ops.ResizeBilinear(
        images=pixels[tf.newaxis], size=[INPUT_SIZE, INPUT_SIZE],
        align_corners=False, half_pixel_centers=False)[0]
    # 1/128 is a power of two: multiplying equals the graph's Sub-then-Mul exactly.
    return (resized - 128.0) * (1.0 / 128.0), shape[1], shape[0]


@tf.function(input_signature=[tf.TensorSpec((), tf.string)], autograph=False)
def _decode_and_resize(data):
    return _resize(_decode(data))


@tf.function(input_signature=[tf.TensorSpec((), tf.string)], autograph=False)
def _decode_png_and_resize(data):
    # channels=3 turns grey, grey+alpha, palette and RGBA into RGB (alpha dropped);
    # dtype uint8 reduces 16-bit samples to 8 bits, as a JPEG of the picture would hold.
    return _resize(tf.io.decode_png(data, channels=3, dtype=tf.uint8))


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
        raise UnsupportedImage(f"unsupported JPEG bit depth ({bits}-bit; only 8-bit)")
    _check_pixels(width, height, max_pixels)
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


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise TooManyPixels(f"too many pixels ({width}x{height} = {width * height} > "
                            f"MAX_IMAGE_PIXELS {max_pixels})")


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Formats recognised only to say that they are not taken (415 rather than "not an image").
_OTHER_FORMATS = {b"GIF87a": "GIF", b"GIF89a": "GIF", b"BM": "BMP", b"II*\x00": "TIFF",
                  b"MM\x00*": "TIFF", b"RIFF": "WebP", b"\x00\x00\x00\x0cjP": "JPEG 2000"}
UPLOAD_FORMATS = ("JPEG", "PNG")


def png_header(data: bytes) -> tuple[int, int]:
    """Return (width, height) from a PNG's IHDR chunk; raise ImageError."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ImageError("unreadable PNG header")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def image_format(data: bytes) -> str:
    """Return "JPEG" or "PNG" from the first bytes; raise ImageError or UnsupportedImage."""
    if not data:
        raise ImageError("empty file")
    if data.startswith(_JPEG_MAGIC):
        return "JPEG"
    if data.startswith(PNG_MAGIC):
        return "PNG"
    for magic, name in _OTHER_FORMATS.items():
        if data.startswith(magic):
            raise UnsupportedImage(f"{name} images are not accepted; send a JPEG or PNG")
    raise ImageError("not a JPEG or PNG image")


def load_upload(data: bytes, max_pixels: int) -> tuple[np.ndarray, int, int, str]:
    """Return the network input, width, height and format ("JPEG" or "PNG") of an image.

    A JPEG takes exactly the feature job's path (load_image)."""
    kind = image_format(data)
    if kind == "JPEG":
        return (*load_image(data, max_pixels), kind)
    width, height = png_header(data)
    _check_pixels(width, height, max_pixels)
    if width == 0 or height == 0:
        raise ImageError("PNG has no pixels")
    try:
        image, decoded_width, decoded_height = _decode_png_and_resize(tf.constant(data))
    except tf.errors.InvalidArgumentError as error:
        raise ImageError("corrupt or truncated PNG: " + _tf_reason(error)) from None
    return image.numpy(), int(decoded_width), int(decoded_height), kind
