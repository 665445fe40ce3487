"""What a run needs to be allowed on a server database, checked before any work.

A run creates its tables, fills them, measures and drops them. A user without those
privileges would meet "permission denied" at the first CREATE TABLE, once the run had
started, and leave an empty result file: a bad setup, not a failed run. So the run asks
the server first, without creating anything, and stops with one line naming the grant
an administrator would give (exit 2).

PostgreSQL: CREATE on the schema the tables go in (``current_schema()``); the tables are
then the user's own, with every privilege on them. MySQL and MariaDB: each privilege a
run uses on the database, from the current user's global and schema grants (database
grants may be patterns such as ``sqla\\_%``, hence LIKE).
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from sqla_bench.base.errors import ConfigError

MYSQL_NEEDED = ("SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP")
_POSTGRESQL = text(
    "SELECT current_user, current_database(), current_schema(),"
    " current_schema() IS NOT NULL AND has_schema_privilege(current_schema(), 'CREATE')"
)
# The current user's privileges that reach this database: global ones, and those on
# databases whose name (or pattern) matches it. GRANTEE reads 'user'@'host'.
_MYSQL = text(
    "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = :grantee"
    " UNION SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES"
    " WHERE GRANTEE = :grantee AND DATABASE() LIKE TABLE_SCHEMA"
)


class MissingPrivilege(ConfigError):
    """The run's user may not do what a run does here; the message holds the grant."""


def check_privileges(connection: Connection, dialect: str, where: str) -> None:
    """MissingPrivilege, naming the grant, unless ``connection``'s user may create, fill
    and drop the run's tables in its database."""
    if dialect == "postgresql":
        _check_postgresql(connection, where)
    elif dialect == "mysql":
        _check_mysql(connection, where)


def _check_postgresql(connection: Connection, where: str) -> None:
    user, database, schema, may_create = connection.execute(_POSTGRESQL).one()
    connection.rollback()  # no transaction left open on the lock's connection
    if may_create:
        return
    if schema is None:
        raise MissingPrivilege(
            f"{where}: user {user} has no schema to create tables in (its search_path "
            f"names none that exists): set one, e.g. ALTER ROLE {user} SET search_path = public"
        )
    raise MissingPrivilege(
        f"{where}: user {user} may not create tables in schema {schema} of database "
        f"{database}, as a run must; as its owner or a superuser: "
        f"GRANT CREATE ON SCHEMA {schema} TO {user}"
    )


def _check_mysql(connection: Connection, where: str) -> None:
    current = connection.scalar(text("SELECT CURRENT_USER()"))
    user, _, host = current.rpartition("@")
    database = connection.scalar(text("SELECT DATABASE()"))
    held = set(connection.scalars(_MYSQL, {"grantee": f"'{user}'@'{host}'"}))
    connection.rollback()
    missing = [privilege for privilege in MYSQL_NEEDED if privilege not in held]
    if missing:
        raise MissingPrivilege(
            f"{where}: user '{user}'@'{host}' lacks {', '.join(missing)} on database "
            f"{database}, which a run uses; as an administrator: "
            f"GRANT {', '.join(MYSQL_NEEDED)} ON `{database}`.* TO '{user}'@'{host}'"
        )
