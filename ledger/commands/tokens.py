"""API tokens: how they are kept, and the events that issue and revoke them.

A token is kept as HMAC-SHA256 under a key of this database's own, stored beside the log but
never in it (so never in an export): a plain digest would let whoever holds an export test
guesses of a token offline, and catalog tokens are often guessable; without the key, a digest
tells nothing. A log imported into another database therefore brings no working tokens with it.
Ledgers from before kept plain SHA-256 digests in their events; those are read as `sha256:`
digests and still authenticate, until the tokens are revoked or replaced.
"""

import datetime as dt
import functools
import hashlib
import hmac
import secrets

from ledger.backends import Connection
from ledger.log import events
from ledger.log.records import NewEvent
from ledger.rules import clock
from projections import catalog as catalog_view
from projections import schema

KEY_NAME = "token_hmac"
TOKEN_BYTES = 20  # 40 hex digits, as Waldur's own tokens


class TokenError(ValueError):
    """A token command that cannot be carried out (an unknown user or token, a past expiry)."""


KEYS = schema.Table("ledger_keys", {"name": "text", "value": "blob"}, ("name",), required=("value",),
                    with_the_log=True)


def create(conn: Connection) -> None:
    """The table of this database's keys, and its token key, made once; rebuilds never touch it."""
    schema.make(conn, KEYS)
    conn.execute("INSERT INTO ledger_keys (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                 (KEY_NAME, secrets.token_bytes(32)))


def key(conn: Connection) -> bytes:
    (value,) = conn.execute("SELECT value FROM ledger_keys WHERE name = ?", (KEY_NAME,)).fetchone()
    return value


def new_token() -> str:
    return secrets.token_hex(TOKEN_BYTES)


@functools.lru_cache(maxsize=1024)
def digest(token_key: bytes, token: str) -> str:
    """How a token is kept in events and views. Kept for the tokens last presented: every request
    asks, and an HMAC was a fortieth of a usage list page's CPU."""
    return "hmac-sha256:" + hmac.digest(token_key, token.encode(), "sha256").hex()


def digests(token_key: bytes, token: str) -> tuple[str, str]:
    """Every digest under which a presented token may be kept: this ledger's, and an older ledger's."""
    return digest(token_key, token), "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def expired(expires_at: str | None) -> bool:
    """Whether a token expiring at `expires_at` (stored text, or None for never) has expired. The
    clock is read only for a token that expires: every request asks, and most tokens never do."""
    return expires_at is not None and expires_at <= clock.stored(clock.now())


def stream(user_id: int) -> str:
    return f"token/{user_id}"


def issue(user_id: int, token_digest: str, expires_at: str | None, version: int, occurred_at: str) -> NewEvent:
    """The event issuing a token to a user; `version` is the next of the user's token stream."""
    if expires_at is not None and expires_at <= occurred_at:
        raise TokenError(f"the expiry {expires_at} is not in the future")
    data = {"user_id": user_id, "token_digest": token_digest, "expires_at": expires_at}
    return events.new(stream(user_id), version, "TokenIssued", data, occurred_at)


def revoke(user_id: int, held: list[int], token_id: int | None, version: int, occurred_at: str) -> list[NewEvent]:
    """The event revoking a user's live tokens `held` (ids), or only `token_id` of them; none when none is left."""
    if token_id is not None and token_id not in held:
        raise TokenError(f"user {user_id} holds no live token {token_id}")
    revoked = held if token_id is None else [token_id]
    if not revoked:
        return []
    return [events.new(stream(user_id), version, "TokenRevoked", {"user_id": user_id, "token_ids": revoked}, occurred_at)]


def expiry(text: str, now: dt.datetime) -> dt.datetime:
    """When a token given `--expires TEXT` expires: an ISO date or datetime, or a number of days from `now` (`90d`)."""
    if text.endswith("d") and text[:-1].isdigit():
        return now + dt.timedelta(days=int(text[:-1]))
    return clock.parse_datetime(text)


def issue_token(ledger, username: str, expires_at: dt.datetime | None = None) -> tuple[int, str]:
    """Issues a new random token to a user: (its id, the token). Only its digest is kept, so it is shown once."""
    user_id = _user_id(ledger.conn, username)
    token = new_token()
    kept = digest(key(ledger.conn), token)
    expires = None if expires_at is None else clock.stored(expires_at)
    stored = ledger.write(lambda: [
        issue(user_id, kept, expires, ledger.store.stream_version(stream(user_id)) + 1, clock.stored(clock.now()))
    ])
    return stored[-1].seq, token


def revoke_tokens(ledger, username: str, token_id: int | None = None) -> list[int]:
    """Revokes every live token of a user, or only `token_id`; returns the ids revoked (none left: none)."""
    user_id = _user_id(ledger.conn, username)

    def decide() -> list[NewEvent]:
        held = [row["id"] for row in catalog_view.tokens(ledger.conn, user_id) if row["revoked_at"] is None]
        version = ledger.store.stream_version(stream(user_id)) + 1
        return revoke(user_id, held, token_id, version, clock.stored(clock.now()))

    stored = ledger.write(decide)
    return [token for event in stored if event.type == "TokenRevoked" for token in event.data["token_ids"]]


def listed(conn: Connection, username: str | None = None) -> list[dict]:
    """Every token (never the token or its digest), or one user's: id, user_id, username, source, created, expires_at, revoked_at."""
    return catalog_view.tokens(conn, None if username is None else _user_id(conn, username))


def _user_id(conn: Connection, username: str) -> int:
    user_id = catalog_view.user_id(conn, username)
    if user_id is None:
        raise TokenError(f"no user named {username!r} in the catalog")
    return user_id
