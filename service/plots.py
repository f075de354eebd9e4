"""Heat-map plots of a feature vector as SVG (written by hand) and PNG (Pillow)."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

LEVELS = 64
# Viridis at nine stops: readable in grey, and for colour-blind readers.
_STOPS = np.array([(0x44, 0x01, 0x54), (0x47, 0x2d, 0x7b), (0x3b, 0x52, 0x8b),
                   (0x2c, 0x72, 0x8e), (0x21, 0x91, 0x8c), (0x28, 0xae, 0x80),
                   (0x5e, 0xc9, 0x62), (0xad, 0xdc, 0x30), (0xfd, 0xe7, 0x25)], float)
_POSITIONS = np.linspace(0.0, 1.0, len(_STOPS))
PALETTE = np.stack([np.interp(np.linspace(0.0, 1.0, LEVELS), _POSITIONS, _STOPS[:, c])
                    for c in range(3)], axis=1).round().astype(np.uint8)


def levels(vector: np.ndarray, rows: int, columns: int, wrap: bool = False) -> np.ndarray:
    """Return the vector as a (rows, columns) grid of colour levels 0..LEVELS-1."""
    values = np.nan_to_num(np.asarray(vector, dtype=np.float64))
    cells = rows * columns
    if wrap:
        # The original plot filled a 46x46 square by starting over at value 0.
        values = values[np.arange(cells) % values.size]
    elif values.size != cells:
        raise ValueError(f"{values.size} values do not fill {rows}x{columns} cells")
    low, high = values.min(), values.max()
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return np.minimum((scaled * LEVELS).astype(np.int64), LEVELS - 1).reshape(rows, columns)


def fingerprint_svg(vector: np.ndarray, rows: int = 32, columns: int = 64,
                    wrap: bool = False, cell: int = 8) -> str:
    """Return an SVG heat map of the vector: one path per colour, one unit per value."""
    grid = levels(vector, rows, columns, wrap)
    runs: dict[int, list[str]] = {}
    for y in range(rows):
        line = grid[y]
        # Cells where the level changes start a run of equal colour.
        starts = np.flatnonzero(np.r_[True, line[1:] != line[:-1]])
        ends = np.r_[starts[1:], columns]
        for x0, x1 in zip(starts.tolist(), ends.tolist()):
            runs.setdefault(int(line[x0]), []).append(f"M{x0} {y}h{x1 - x0}v1h{x0 - x1}z")
    values = np.asarray(vector, dtype=np.float64)
    title = (f"{values.size} feature values as a {rows}x{columns} grid, "
             f"min {np.nanmin(values):.4g}, max {np.nanmax(values):.4g}")
    paths = "".join(f'<path fill="#{PALETTE[level, 0]:02x}{PALETTE[level, 1]:02x}'
                    f'{PALETTE[level, 2]:02x}" d="{"".join(parts)}"/>'
                    for level, parts in sorted(runs.items()))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{columns * cell}" '
            f'height="{rows * cell}" viewBox="0 0 {columns} {rows}" '
            f'shape-rendering="crispEdges" role="img"><title>{title}</title>{paths}</svg>')


def fingerprint_png(vector: np.ndarray, rows: int = 32, columns: int = 64,
                    cell: int = 8) -> bytes:
    """Return a PNG heat map of the vector, `cell` pixels per value."""
    grid = levels(vector, rows, columns)
    picture = Image.fromarray(PALETTE[grid], "RGB")
    picture = picture.resize((columns * cell, rows * cell), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()
