"""Token authentication as Waldur does it: `Authorization: Token <key>` or `?x-auth-token=`."""

from flask import current_app, g, request

from ledger.commands import tokens
from ledger.rules.access import Caller
from projections import catalog

from .caching import ViewCache
from .errors import ApiError

CHALLENGE = {"WWW-Authenticate": "Token"}
# token digest -> its user and roles and its expiry, until the catalog (or any row) changes: a
# revocation, even by another process, changes rows. Expiry is checked on every request.
CALLERS = ViewCache()


def presented_token() -> str | None:
    header = request.headers.get("Authorization", "")
    keyword, _, key = header.strip().partition(" ")
    if keyword.lower() == "token" and key.strip():
        return key.strip()
    return request.args.get("x-auth-token") or None


def authenticate(conn) -> Caller:
    """The caller of this request; 401 when no token is given or the token is unknown."""
    token = presented_token()
    if token is None:
        raise ApiError(401, {"detail": "Authentication credentials were not provided."}, CHALLENGE)
    found = known_caller(conn, token)
    if found is None:
        raise ApiError(401, {"detail": "Invalid token."}, CHALLENGE)
    g.caller = found
    return found


def known_caller(conn, token: str) -> Caller | None:
    """The user holding `token` with their roles; None when the token is unknown, revoked or expired."""
    token_key = current_app.extensions["ledger"]["token_key"]
    # Kept by its digest under this ledger's key; an older ledger's digest is computed only to look it up.
    found = CALLERS.get(tokens.digest(token_key, token),
                        lambda: catalog.token_holder(conn, tokens.digests(token_key, token)), rows_only=True)
    if found is None or tokens.expired(found[1]):
        return None
    return found[0]
