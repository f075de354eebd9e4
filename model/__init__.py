"""Inception v3 (TensorFlow 2015-12-05 ImageNet graph) `pool_3` features, offline weights."""
from model.archive import ModelUnavailable
from model.extractor import Extractor, load_extractor

__all__ = ["Extractor", "ModelUnavailable", "load_extractor"]
