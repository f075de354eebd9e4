"""Layer 3, what every job shares: settings, the command line, progress, the jobs row,
one run at a time, and where partitions run (in-process or on Dask)."""

# Before anything can import TensorFlow or numba: see db/__init__.py.
import db  # noqa: F401
