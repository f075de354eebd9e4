"""Load the Inception v3 feature extractor, converting and caching the weights once."""
from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf

from model.archive import ARCHIVE_SHA1, INSTALL_HINT, ModelUnavailable, find_archive, read_weights
from model.network import INPUT_SIZE, archive_name, build_network, conv_padding
from numerics.vectors import DIMENSIONS, MODEL_NAME

log = logging.getLogger(__name__)

# Bump when the cache's layout or the conversion changes: older caches are then rebuilt.
CACHE_FORMAT = 1


@contextmanager
def _quiet_keras_numpy():
    # Keras 3's save/load_weights call np.array(variable), which numpy 2 flags with a
    # DeprecationWarning per variable (a Keras issue; harmless): keep the logs readable.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept",
                                category=DeprecationWarning)
        yield


class Extractor:
    """Compute `pool_3` features of preprocessed (n, 299, 299, 3) float32 batches."""

    name = MODEL_NAME

    def __init__(self, model):
        self.model = model
        # A fixed signature traces once for every batch size: no retracing per batch.
        self._run = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec((None, INPUT_SIZE, INPUT_SIZE, 3), tf.float32)],
            autograph=False)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Return the (n, 2048) float32 features of a (n, 299, 299, 3) float32 batch."""
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"expected a batch of shape (n, {INPUT_SIZE}, {INPUT_SIZE}, 3), "
                             f"got {batch.shape}")
        if batch.shape[0] == 0:
            return np.empty((0, DIMENSIONS), dtype=np.float32)
        return self._run(tf.convert_to_tensor(batch, tf.float32)).numpy()


def _convert(archive_path: Path | None):
    """Return the graph-faithful network with the archive's weights."""
    weights = read_weights(archive_path)
    model, convs = build_network(folded=False)
    if set(map(archive_name, convs)) != set(weights):
        raise ModelUnavailable("the weights archive does not match the network; reinstall "
                               f"it with: {INSTALL_HINT}")
    for name, (kernel, strides, padding) in convs.items():
        layer = weights[archive_name(name)]
        padding_archive = layer["padding"]
        if isinstance(padding_archive, int):
            padding_archive = [padding_archive, padding_archive]
        # The builder's hand-written strides and paddings must be the archive's.
        if layer["stride"] != strides or list(padding_archive) != conv_padding(kernel, padding):
            raise RuntimeError(f"{name}: archive has stride {layer['stride']} padding "
                               f"{padding_archive}, network has {strides} {padding}")
        # PyTorch kernels are (out, in, kh, kw); Keras wants (kh, kw, in, out).
        model.get_layer(f"{name}.conv2d").set_weights([layer["weight"].transpose(2, 3, 1, 0)])
        model.get_layer(f"{name}.batchnorm").set_weights(
            [layer["beta"], layer["mean"], layer["var"]])
    return model


def _write_cache(model, cache_path: Path) -> None:
    """Save the weights beside `cache_path`, then rename: a kill leaves no broken cache."""
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=cache_path.parent, prefix=".tmp-",
                                    suffix=".weights.h5")
    os.close(handle)
    try:
        with _quiet_keras_numpy():
            model.save_weights(temp, overwrite=True)
        with h5py.File(temp, "a") as file:
            file.attrs["archive_sha1"] = ARCHIVE_SHA1
            file.attrs["cache_format"] = CACHE_FORMAT
        # mkstemp makes the file 0600; the service or a job may run as another user
        # (the Docker image converts as root and runs unprivileged).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)
        os.replace(temp, cache_path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def cache_is_current(cache_path: Path) -> bool:
    """Return whether `cache_path` holds weights converted from the pinned archive."""
    try:
        with h5py.File(cache_path, "r") as file:
            sha1 = file.attrs.get("archive_sha1")
            fmt = file.attrs.get("cache_format")
    except (OSError, ValueError):
        return False
    if isinstance(sha1, bytes):
        sha1 = sha1.decode()
    return sha1 == ARCHIVE_SHA1 and fmt is not None and int(fmt) == CACHE_FORMAT


def _weights(layer) -> list[np.ndarray]:
    # Like layer.get_weights(), without its numpy-2 copy-keyword deprecation warning.
    return [variable.numpy() for variable in layer.weights]


def fold(model) -> object:
    """Return the inference twin of `model` with each batch norm merged into its conv."""
    folded, convs = build_network(folded=True)
    for name in convs:
        (kernel,) = _weights(model.get_layer(f"{name}.conv2d"))
        batchnorm = model.get_layer(f"{name}.batchnorm")
        beta, mean, var = _weights(batchnorm)
        # relu((x*w - mean) / sqrt(var + eps) + beta) == relu(x*(w*s) + (beta - mean*s)).
        scale = 1.0 / np.sqrt(var.astype(np.float64) + batchnorm.epsilon)
        folded.get_layer(name).set_weights([
            (kernel * scale).astype(np.float32),
            (beta - mean * scale).astype(np.float32)])
    return folded


def load_network(cache_path: Path, archive_path: Path | None = None):
    """Return the graph-faithful network, from the cache or converted from the archive."""
    cache_path = Path(cache_path)
    started = time.perf_counter()
    if cache_is_current(cache_path):
        model, _ = build_network(folded=False)
        try:
            with _quiet_keras_numpy():
                model.load_weights(cache_path)
        except (OSError, ValueError, KeyError) as error:
            log.warning("weights cache %s unreadable (%s); rebuilding it", cache_path, error)
        else:
            log.info("model warm start: weights from cache %s in %.1f s", cache_path,
                     time.perf_counter() - started)
            return model
    elif cache_path.exists():
        log.info("weights cache %s is stale; rebuilding it", cache_path)
    archive_path = find_archive() if archive_path is None else Path(archive_path)
    model = _convert(archive_path)
    _write_cache(model, cache_path)
    log.info("model cold start: converted %s to cache %s in %.1f s", archive_path, cache_path,
             time.perf_counter() - started)
    return model


def use_gpus() -> list:
    """Return the GPUs TensorFlow will run the model on (none: the CPU), each taking
    memory as it needs it rather than all at once, so that several processes (Dask
    workers, the service) can share one."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised by an earlier op: keep its setting
            pass
    return gpus


def load_extractor(cache_path: Path, archive_path: Path | None = None) -> Extractor:
    """Return the feature extractor, converting the weights into `cache_path` if needed."""
    gpus = use_gpus()
    log.info("the model runs on %s", ", ".join(g.name for g in gpus) if gpus else "the CPU")
    return Extractor(fold(load_network(cache_path, archive_path)))
