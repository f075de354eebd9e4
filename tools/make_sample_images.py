"""Write the demo's sample images into sample_images/ (deterministic).

The sources are the public-domain and CC0 photos that ship inside scikit-image's
`skimage/data` folder (no download). Besides each original, the set holds the kind of
near-duplicates an archive accumulates: crops, rescales, a rotation, a recompression at
low quality and a grayscale copy, in nested folders (one with a space and a non-ASCII
name, as real archives have). SOURCES.md lists every file with its source and licence.

Run from the project root with the dev requirements installed:
    .venv/bin/python tools/make_sample_images.py [OUTPUT_FOLDER]
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from skimage import data as skdata

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Source:
    name: str
    load: Callable[[], np.ndarray]
    description: str
    licence: str


# Only photos whose skimage docstring says public domain or CC0 (checked in
# skimage 0.26's skimage/data/_fetchers.py); "no known copyright restrictions"
# alone (coins, immunohistochemistry) is not enough and is left out.
SOURCES = {
    s.name: s for s in (
        Source("astronaut", skdata.astronaut,
               "Astronaut Eileen Collins, NASA Great Images database (https://flic.kr/p/r9qvLn)",
               "Public domain (NASA; \"released into the public domain\")"),
        Source("camera", skdata.camera,
               "Man with a camera on a tripod, photographer Lav Varshney",
               "CC0 1.0 (\"CC0 by the photographer\")"),
        Source("chelsea", skdata.chelsea,
               "Chelsea the cat, photographer Stefan van der Walt",
               "CC0 1.0 (\"CC0 by the photographer\")"),
        Source("coffee", skdata.coffee,
               "Coffee cup, Pikolo Espresso Bar, photographer Rachel Michetti",
               "CC0 1.0 (\"CC0 by the photographer\")"),
        Source("rocket", skdata.rocket,
               "Launch of DSCOVR on Falcon 9, SpaceX "
               "(https://www.flickr.com/photos/spacexphotos/16511594820/)",
               "Public domain (released by SpaceX)"),
        Source("hubble_deep_field", skdata.hubble_deep_field,
               "Hubble eXtreme Deep Field, NASA "
               "(http://hubblesite.org/newscenter/archive/releases/2012/37/image/a/)",
               "Public domain (NASA media guidelines)"),
        Source("clock", skdata.clock,
               "Motion-blurred wall clock, photographer Stefan van der Walt",
               "Public domain (\"released into the public domain by the photographer\")"),
        Source("retina", skdata.retina,
               "Fundus photograph of a normal left eye, Mikael Häggström, Wikimedia Commons "
               "(https://commons.wikimedia.org/wiki/File:Fundus_photograph_of_normal_left_eye.jpg)",
               "CC0 1.0 Universal"),
        Source("brick", skdata.brick,
               "Brick wall texture, CC0Textures Bricks25 (https://cc0textures.com/view.php?tex=Bricks25)",
               "CC0 1.0"),
        Source("gravel", skdata.gravel,
               "Gravel texture, CC0Textures Gravel04 (https://cc0textures.com/view.php?tex=Gravel04)",
               "CC0 1.0"),
    )
}


def crop(box: tuple[float, float, float, float]):
    """Return an edit keeping the fraction box (left, top, right, bottom) of the image."""
    def edit(image: Image.Image) -> Image.Image:
        w, h = image.size
        left, top, right, bottom = box
        return image.crop((round(left * w), round(top * h), round(right * w), round(bottom * h)))
    return edit


def scale(factor: float):
    """Return an edit resizing the image by factor (Lanczos)."""
    def edit(image: Image.Image) -> Image.Image:
        w, h = image.size
        return image.resize((max(1, round(w * factor)), max(1, round(h * factor))),
                            Image.Resampling.LANCZOS)
    return edit


def rotate(degrees: int):
    """Return an edit rotating the image by a multiple of 90 degrees, as a scanner would."""
    transpose = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
                 270: Image.Transpose.ROTATE_270}[degrees]
    return lambda image: image.transpose(transpose)


def gray(image: Image.Image) -> Image.Image:
    return image.convert("L")


def keep(image: Image.Image) -> Image.Image:
    return image


@dataclass(frozen=True)
class Item:
    path: str
    source: str
    edit: Callable[[Image.Image], Image.Image]
    note: str
    quality: int = 90


ITEMS = (
    Item("people/astronaut.jpg", "astronaut", keep, "original"),
    Item("people/astronaut_face_crop.jpg", "astronaut", crop((0.30, 0.0, 0.75, 0.50)),
         "crop of the face"),
    Item("people/astronaut_grayscale.jpg", "astronaut", gray, "grayscale copy"),
    Item("people/camera.jpg", "camera", keep, "original (grayscale photo)"),
    Item("people/camera_small.jpg", "camera", scale(0.4), "rescaled to 40 %"),
    Item("animals/chelsea.jpg", "chelsea", keep, "original"),
    Item("animals/chelsea_rotated.jpg", "chelsea", rotate(90), "rotated 90° (scanned sideways)"),
    Item("animals/chelsea_thumbnail.jpg", "chelsea", scale(0.33), "rescaled to 33 %"),
    Item("objects/coffee.jpg", "coffee", keep, "original"),
    Item("objects/coffee_low_quality.jpg", "coffee", keep,
         "recompressed at JPEG quality 20", quality=20),
    Item("objects/coffee_cup_crop.jpg", "coffee", crop((0.05, 0.0, 0.85, 0.95)),
         "crop around the cup"),
    Item("objects/clock.jpg", "clock", keep, "original (grayscale photo)"),
    Item("objects/clock_large.jpg", "clock", scale(1.5), "rescaled to 150 %"),
    Item("space/rocket.jpg", "rocket", keep, "original"),
    Item("space/rocket_launch_crop.jpg", "rocket", crop((0.25, 0.05, 0.75, 0.95)),
         "crop of the launch"),
    Item("space/rocket_small_q50.jpg", "rocket", scale(0.5),
         "rescaled to 50 % and saved at JPEG quality 50", quality=50),
    Item("space/hubble/hubble_deep_field.jpg", "hubble_deep_field", scale(0.6),
         "rescaled to 60 % (the reference copy)"),
    Item("space/hubble/hubble_deep_field_top_left.jpg", "hubble_deep_field",
         crop((0.0, 0.0, 0.6, 0.6)), "crop of the top-left part"),
    Item("space/hubble/hubble_deep_field_rotated.jpg", "hubble_deep_field",
         lambda image: scale(0.6)(image).transpose(Image.Transpose.ROTATE_180),
         "rescaled to 60 % and rotated 180°"),
    Item("medical/retina.jpg", "retina", scale(0.5), "rescaled to 50 % (the reference copy)"),
    Item("medical/retina_small_grayscale.jpg", "retina",
         lambda image: scale(0.25)(image).convert("L"), "rescaled to 25 %, grayscale"),
    Item("textures/brick.jpg", "brick", keep, "original (grayscale photo)"),
    Item("textures/brick_crop.jpg", "brick", crop((0.2, 0.2, 0.9, 0.9)), "crop"),
    Item("textures/gravel.jpg", "gravel", keep, "original (grayscale photo)"),
    # A later import with a space and a non-ASCII letter in the folder name: the
    # same photos again, as a second scan of the same prints would arrive.
    Item("imports/2024-03 Nachlass Müller/scan_0001.jpg", "chelsea", crop((0.02, 0.02, 0.98, 0.98)),
         "crop of the edges (a second scan)", quality=85),
    Item("imports/2024-03 Nachlass Müller/scan_0002.jpg", "coffee", scale(0.75),
         "rescaled to 75 %", quality=85),
    Item("imports/2024-03 Nachlass Müller/scan_0003.jpg", "astronaut", scale(0.8),
         "rescaled to 80 %", quality=85),
)


def load(source: Source) -> Image.Image:
    """Return the source photo as an 8-bit RGB or grayscale PIL image."""
    array = source.load()
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(array)


def write_sources(out: Path) -> None:
    """Write SOURCES.md: every file with its source photo and licence."""
    lines = [
        "# Sample images: sources and licences",
        "",
        "Every photo below comes from the sample data bundled in scikit-image 0.26",
        "(`skimage/data`), whose documentation marks each of these as public domain or",
        "CC0; the wording quoted is from that documentation. The near-duplicates are",
        "edits made by `tools/make_sample_images.py`, which writes this folder",
        "deterministically; they carry the licence of their source photo.",
        "",
        "## Source photos",
        "",
        "| Source | Description | Licence |",
        "|---|---|---|",
    ]
    for source in SOURCES.values():
        lines.append(f"| `{source.name}` | {source.description} | {source.licence} |")
    lines += ["", "## Files", "", "| File | Source | Edit |", "|---|---|---|"]
    for item in ITEMS:
        lines.append(f"| `{item.path}` | `{item.source}` | {item.note} |")
    lines.append("")
    (out / "SOURCES.md").write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "sample_images"
    out.mkdir(parents=True, exist_ok=True)
    cache: dict[str, Image.Image] = {}
    total = 0
    for item in ITEMS:
        if item.source not in cache:
            cache[item.source] = load(SOURCES[item.source])
        image = item.edit(cache[item.source])
        target = out / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        # No EXIF, no optimisation passes that vary by build: the same bytes every run.
        image.save(target, "JPEG", quality=item.quality)
        total += target.stat().st_size
    write_sources(out)
    print(f"wrote {len(ITEMS)} images ({total / 1e6:.1f} MB) and SOURCES.md to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
