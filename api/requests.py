"""Request bodies: JSON as DRF parses it, with its error wording."""

import json

from flask import g, request

from ledger import idempotency
from ledger.access import Caller
from ledger.store import canonical

from .errors import bad_request

MAX_KEY_LENGTH = 255


def json_body():
    """The request's JSON body (an empty body is an empty object); 400 in DRF's words when it is not JSON."""
    data = request.get_data(cache=True)
    if not data.strip():
        return {}
    try:
        body = json.loads(data)
        canonical(body).encode()  # "\ud800" parses, but a lone surrogate is not text: it could not be stored
        return body
    except (ValueError, RecursionError) as error:  # UnicodeEncodeError is a ValueError
        raise bad_request({"detail": f"JSON parse error - {error}"}) from None


def idempotency_key(caller: Caller, status: int = 201) -> idempotency.Key | None:
    """The request's `Idempotency-Key`, bound to the caller and the request's method, path and body.

    A key seen before answers at once: its original status for the same request (Replayed),
    422 for a different one (KeyReused); see errors.py.
    """
    text = request.headers.get("Idempotency-Key")
    if text is None:
        return None
    if not 0 < len(text) <= MAX_KEY_LENGTH:
        raise bad_request({"detail": f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters."})
    try:
        body = canonical(json.loads(request.get_data(cache=True) or b"{}")).encode()
    except (ValueError, RecursionError):
        body = request.get_data(cache=True)
    key = idempotency.Key.of(caller.id, text, request.method, request.path, body, status)
    idempotency.check(g.ledger.conn, key)
    return key
