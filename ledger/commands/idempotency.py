"""Idempotency keys: a retried write with the same key and body is answered again, not applied again.

A key is remembered per user together with a hash of the request and the status it got,
in the same transaction as the events it produced, so a key is remembered if and only if
its write landed. Keys are kept RETENTION_DAYS; they are purged when a billing month starts.
"""

import dataclasses
import datetime as dt
import hashlib

from ledger.backends import Connection
from ledger.rules import clock
from projections import schema

RETENTION_DAYS = 36


class KeyReused(Exception):
    """The key was used before by this user for a different request."""


@dataclasses.dataclass(frozen=True)
class Key:
    """An idempotency key as presented by one user for one request, and the status its success answers."""

    user_id: int
    key: str
    request_hash: str
    status: int

    @classmethod
    def of(cls, user_id: int, key: str, method: str, path: str, body: bytes, status: int) -> "Key":
        digest = hashlib.sha256(b"\0".join((method.encode(), path.encode(), body))).hexdigest()
        return cls(user_id, key, digest, status)


class Replayed(Exception):
    """The request was made before with this key; `status` is what it got then."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


TABLE = schema.Table(
    "idempotency_keys",
    {"user_id": "integer", "key": "text", "request_hash": "text", "status": "integer", "created": "text"},
    ("user_id", "key"), indexes=(("created",),), with_the_log=True,  # checked and written with the append
)


def create(conn: Connection) -> None:
    schema.make(conn, TABLE)


def check(conn: Connection, key: Key) -> None:
    """Raises Replayed when this request was made before with the key, KeyReused when another was."""
    row = conn.execute(
        "SELECT request_hash, status FROM idempotency_keys WHERE user_id = ? AND key = ?", (key.user_id, key.key)
    ).fetchone()
    if row is None:
        return
    if row[0] != key.request_hash:
        raise KeyReused(key.key)
    raise Replayed(row[1])


def remember(conn: Connection, key: Key) -> None:
    conn.execute(
        "INSERT INTO idempotency_keys (user_id, key, request_hash, status, created) VALUES (?, ?, ?, ?, ?)",
        (key.user_id, key.key, key.request_hash, key.status, clock.stored(clock.now())),
    )


def purge(conn: Connection) -> None:
    cutoff = clock.stored(clock.now() - dt.timedelta(days=RETENTION_DAYS))
    conn.execute("DELETE FROM idempotency_keys WHERE created < ?", (cutoff,))
