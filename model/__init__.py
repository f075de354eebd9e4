"""Inception v3 (TensorFlow 2015-12-05 ImageNet graph) `pool_3` features, offline weights."""
from model.archive import ModelUnavailable

__all__ = ["Extractor", "ModelUnavailable", "load_extractor"]


def __getattr__(name: str):
    # The extractor imports TensorFlow (seconds): only when asked for, so that
    # model.archive's checks can run without it (a feature job with nothing to do).
    if name in ("Extractor", "load_extractor"):
        from model import extractor
        return getattr(extractor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
