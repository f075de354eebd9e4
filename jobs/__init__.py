"""Layer 3, the batch jobs, in the order data flows: files → features → neighbours, and
beside them the catalogue import and the evaluation of the lists."""

# Before anything can import TensorFlow or numba: see db/__init__.py.
import db  # noqa: F401
