"""Database schema, engine and queries shared by the jobs and the service."""

# mysql-connector's C extension must load before TensorFlow or numba: their libraries use
# up the static TLS that the extension's libstdc++ needs, and mysql-connector then falls
# back to its pure Python protocol without a word (several times the CPU per query).
# Every program that talks to a database imports this package before either of them.
try:
    import mysql.connector  # noqa: F401
except ImportError:  # not installed: the embedded SQLite needs no driver
    pass
