"""The 2015 graph's preprocessing by other means than the project's code, for checking it.

Decoding by Debian's `djpeg` (libjpeg-turbo's own tool, a separate build from the one in
TensorFlow) with the IDCT the graph's DecodeJpeg used, and TF1's bilinear resize written
out in numpy. tools/make_golden_vectors.py feeds these inputs to the reference model; the
tests compare model.preprocess with them.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess

import numpy as np
from PIL import Image

INPUT_SIZE = 299


def djpeg_path() -> str | None:
    """Return the djpeg program (Debian's libjpeg-turbo-progs), or None."""
    return shutil.which("djpeg") or (
        "/usr/bin/djpeg" if os.access("/usr/bin/djpeg", os.X_OK) else None)


def djpeg_pixels(data: bytes, dct: str = "fast") -> np.ndarray:
    """Return the (height, width, 3) uint8 RGB pixels djpeg decodes from JPEG bytes.

    dct "fast" is libjpeg's JDCT_IFAST, "int" JDCT_ISLOW; fancy upsampling is djpeg's
    default. Grayscale comes back as PGM and is repeated into three channels; djpeg
    turns CMYK into RGB itself (rounding where TensorFlow truncates).
    """
    program = djpeg_path()
    if program is None:
        raise FileNotFoundError("djpeg not found; install Debian's libjpeg-turbo-progs")
    output = subprocess.run([program, "-dct", dct, "-pnm"], input=data,
                            capture_output=True, check=True).stdout
    pixels = np.asarray(Image.open(io.BytesIO(output)))
    return np.repeat(pixels[:, :, None], 3, axis=2) if pixels.ndim == 2 else pixels


def tf1_resize(image: np.ndarray, size: int = INPUT_SIZE,
               half_pixel_centers: bool = False) -> np.ndarray:
    """Resize like TF1's ResizeBilinear (align_corners=False), in float32."""
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


def network_input(data: bytes) -> np.ndarray:
    """Return the (299, 299, 3) float32 input the 2015 graph made of JPEG bytes."""
    return (tf1_resize(djpeg_pixels(data, "fast")) - np.float32(128)) / np.float32(128)
