#!/bin/bash
# Create the two database users on MariaDB's first start (docker-entrypoint-initdb.d).
# Sourced by the official image's entrypoint after db/schema_mariadb.sql, so its
# docker_process_sql helper (root, on the init server's socket) is available.
#   DB_JOBS_USER / DB_JOBS_PASSWORD       read-write: the feature and grouping jobs
#   DB_SERVICE_USER / DB_SERVICE_PASSWORD SELECT only: the web service
# The values come from .env through docker-compose.yml; none is stored in the repository.

# CREATE USER and GRANT take no bound parameters, so the names are restricted to
# characters that need no quoting in SQL or in a database URL.
for name in MARIADB_DATABASE DB_JOBS_USER DB_JOBS_PASSWORD DB_SERVICE_USER DB_SERVICE_PASSWORD; do
    value=${!name:-}
    if [ -z "$value" ] || [[ ! "$value" =~ ^[A-Za-z0-9_.-]+$ ]]; then
        echo "mariadb-init-users.sh: $name must be set and contain only letters," \
            "digits, '_', '.' and '-'" >&2
        exit 1
    fi
done
if [ "$DB_JOBS_USER" = "$DB_SERVICE_USER" ]; then
    echo "mariadb-init-users.sh: DB_JOBS_USER and DB_SERVICE_USER must differ" >&2
    exit 1
fi

# The jobs bring the schema up to date with Alembic on start, so besides reading and
# writing rows they may create, alter and drop tables and indexes in this database only.
docker_process_sql --database=mysql <<SQL
CREATE USER '${DB_JOBS_USER}'@'%' IDENTIFIED BY '${DB_JOBS_PASSWORD}';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, DROP, REFERENCES,
      CREATE TEMPORARY TABLES, LOCK TABLES ON \`${MARIADB_DATABASE}\`.* TO '${DB_JOBS_USER}'@'%';
CREATE USER '${DB_SERVICE_USER}'@'%' IDENTIFIED BY '${DB_SERVICE_PASSWORD}';
GRANT SELECT ON \`${MARIADB_DATABASE}\`.* TO '${DB_SERVICE_USER}'@'%';
FLUSH PRIVILEGES;
SQL
echo "mariadb-init-users.sh: created ${DB_JOBS_USER} (read-write) and" \
    "${DB_SERVICE_USER} (SELECT only) on ${MARIADB_DATABASE}" >&2
