"""Database schema, engine and queries shared by the jobs and the service."""
