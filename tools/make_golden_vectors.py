"""Make the golden-vector fixture: reference pool_3 features from the TorchScript model.

Run from the project root with the project's venv (TensorFlow, scikit-image), naming a
throwaway Python that has PyTorch (the project itself never needs it):

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 numpy
    .venv/bin/python tools/make_golden_vectors.py --torch-python /tmp/torchenv/bin/python

It (1) writes small JPEG derivatives of scikit-image's public-domain/CC0 sample photos to
tests/fixtures/golden/ (skipped for files already there, so the committed JPEGs stay put),
(2) prepares them as the 2015 graph did, but without the project's code: decoded by
Debian's djpeg with libjpeg's IFAST IDCT, resized by TF1's bilinear rule written in numpy
(tests/reference.py), (3) runs the reference TorchScript archive on those 299x299 tensors
(NCHW, same values: the archive's forward pass does no resizing or normalising of its
own), and (4) writes golden.npz with the vectors. The golden vectors are thus made from
the files end to end by an independent path; tests/model/test_model.py compares the
project's whole pipeline, decoding included, with them. Needs djpeg (libjpeg-turbo-progs).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "golden"

# name: (scikit-image sample, longest side of the derivative); sizes differ on purpose.
PHOTOS = {
    "astronaut": ("astronaut", 320),
    "chelsea": ("chelsea", 451),   # original size
    "coffee": ("coffee", 240),
    "rocket": ("rocket", 400),
    "camera": ("camera", 256),     # grayscale JPEG, original size
}


def write_photos() -> list[Path]:
    """Write the JPEG derivatives that are not there yet; return all their paths."""
    from PIL import Image
    from skimage import data

    FIXTURES.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (sample, longest) in PHOTOS.items():
        path = FIXTURES / f"{name}.jpg"
        paths.append(path)
        if path.exists():
            continue
        image = Image.fromarray(getattr(data, sample)())
        scale = longest / max(image.size)
        if scale < 1:
            image = image.resize((round(image.width * scale), round(image.height * scale)),
                                 Image.Resampling.LANCZOS)
        image.save(path, "JPEG", quality=88)
    return paths


def reference(inputs_path: str, archive: str, output_path: str) -> None:
    """Run the TorchScript archive on NHWC inputs; runs inside the PyTorch interpreter."""
    import torch

    torch.set_num_threads(2)
    net = torch.jit.load(archive, map_location="cpu").eval()
    inputs = np.load(inputs_path)
    with torch.no_grad():
        nchw = torch.from_numpy(np.ascontiguousarray(inputs.transpose(0, 3, 1, 2)))
        vectors = net(nchw).numpy().astype(np.float32)
    np.save(output_path, vectors)
    print(f"torch {torch.__version__}: {vectors.shape}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", required=True,
                        help="a Python interpreter with torch installed")
    parser.add_argument("--reference", nargs=3, metavar=("INPUTS", "ARCHIVE", "OUTPUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference:
        reference(*args.reference)
        return

    sys.path.insert(0, str(ROOT / "tests"))  # its reference decoder, shared with the tests
    from model.archive import find_archive, verify_archive
    from reference import djpeg_pixels, network_input

    archive = find_archive()
    verify_archive(archive)
    paths = write_photos()
    inputs = np.stack([network_input(p.read_bytes()) for p in paths])
    sizes = [djpeg_pixels(p.read_bytes()).shape[:2] for p in paths]
    with tempfile.TemporaryDirectory() as temp:
        np.save(Path(temp) / "inputs.npy", inputs)
        subprocess.run([args.torch_python, __file__, "--torch-python", args.torch_python,
                        "--reference", str(Path(temp) / "inputs.npy"), str(archive),
                        str(Path(temp) / "vectors.npy")], check=True)
        vectors = np.load(Path(temp) / "vectors.npy")
    np.savez_compressed(
        FIXTURES / "golden.npz",
        names=np.array([p.name for p in paths]),
        widths=np.array([w for _, w in sizes]),
        heights=np.array([h for h, _ in sizes]),
        # Fingerprints of the preprocessed inputs, so a test can tell a preprocessing
        # change apart from a network change.
        input_means=inputs.mean(axis=(1, 2, 3), dtype=np.float64),
        input_corners=inputs[:, [0, 0, 298, 298, 150], [0, 298, 0, 298, 150], :],
        vectors=vectors)
    print(f"wrote {FIXTURES / 'golden.npz'}: {vectors.shape}")


if __name__ == "__main__":
    main()
