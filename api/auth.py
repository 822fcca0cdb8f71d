"""Token authentication as Waldur does it: `Authorization: Token <key>` or `?x-auth-token=`."""

from flask import g, request

from ledger.access import Caller
from ledger.catalog import token_sha256
from projections import catalog

from .caching import ViewCache
from .errors import ApiError

CHALLENGE = {"WWW-Authenticate": "Token"}
CALLERS = ViewCache()  # token hash -> its user and roles, until the catalog (or any row) changes


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
    """The user holding `token` with their roles; None when the token is unknown."""
    sha256 = token_sha256(token)
    return CALLERS.get(sha256, lambda: catalog.caller(conn, sha256), rows_only=True)
