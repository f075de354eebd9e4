"""Throwaway MariaDB databases for the tests and tools that need a fresh, empty one."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


@contextmanager
def scratch_database(server_url: str, prefix: str = "test") -> Iterator[str]:
    """Create an empty database on the server, yield its URL, drop it afterwards."""
    server = make_url(server_url)
    # Identifiers cannot be bound parameters; the name is made here, never taken from input.
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server.set(database=None))
    with admin.begin() as connection:
        connection.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 "
                                "COLLATE utf8mb4_bin"))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()
