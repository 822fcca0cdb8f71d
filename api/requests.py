"""Request bodies: JSON as DRF parses it, with its error wording."""

import functools
import io
import json
import re
from collections.abc import Callable, Collection
from typing import NoReturn, TypeVar

from flask import current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_content_length

from ledger import backends
from ledger.commands import idempotency
from ledger.database import ArrivalMissed, Ledger
from ledger.errors import DatabaseUnavailable
from ledger.log.records import canonical
from ledger.rules.access import Caller

from .errors import bad_request, write_unsettled

MAX_KEY_LENGTH = 255
UUID_TEXT = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
UUID_IN_PATH = re.compile(rf"(?<=/){UUID_TEXT}(?=/|$)")
WHOLE_UUID = re.compile(rf"^{UUID_TEXT}$")
# A JSON escape of a UTF-16 surrogate: only a UTF-8 body holding one may hold a lone surrogate
# (raw UTF-8 cannot encode one: json.loads refuses such bytes).
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
UUID_FIELDS = ("resource", "plan_period")  # body fields holding a UUID, besides `user` links
T = TypeVar("T")


def unwaited(types: frozenset[str]):
    """Marks a view whose request need not wait for the views to fold events of `types` (Ledger.arrive)."""
    def marked(view):
        view.unwaited = types
        return view
    return marked


def reads_nothing(view):
    """Marks a view that reads nothing of the ledger (a static page, the API's schema): its request
    does not arrive (Ledger.arrive), and is answered while the database is out of reach."""
    view.reads_nothing = True
    return view


def arrives_with_first_read(view):
    """Marks a view whose request's arrival is presumed (Ledger.presume_arrival) and read by its first
    read of the views; where the presumption does not hold, the request is served again, from the
    positions then found (an error answered on it too: a token just made is known there)."""

    @functools.wraps(view)
    def served(*args, **kwargs):
        try:
            answer = view(*args, **kwargs)
        except ArrivalMissed:
            pass
        except Exception:
            if g.ledger.confirm_arrival():
                raise
        else:
            if g.ledger.confirm_arrival():
                return answer
        return view(*args, **kwargs)  # on the positions found, which hold (Ledger.found)

    served.arrives_with_first_read = True
    return served


def restated(view):
    """Marks a view whose write states amounts (a usage report): made a second time, its decision
    finds the first one's events in the log and changes nothing, or appends them if they never
    landed (an append checks the versions that its decision read). See on_a_new_session."""
    view.restated = True
    return view


def on_a_new_session(ledger: Ledger, serve: Callable[[], T], restated: bool = False,
                     unwaited: Collection[str] = ()) -> T:
    """`serve()`, made once more on a new database session if its own was lost (the server restarted
    or failed over, the network failed), when that is safe: before it sent a write (a read, or a
    decision not appended yet), or when its write is `restated` safely. Otherwise the request is
    answered 503 (errors.py's write_unsettled): its write may have landed or not. Made again, the
    request arrives again first (Ledger.arrive, waiting for the `unwaited` types' events too): what it
    had found before it lost its session is not taken on trust (a presumed arrival, say, read no more)."""
    sent = ledger.writes_sent
    try:
        return serve()
    except Exception as error:  # noqa: BLE001 - a driver's own, raised by a read of the views, included
        if not isinstance(backends.neutral(error), DatabaseUnavailable) or not ledger.renew_if_lost():
            raise_neutral(error)
        if ledger.writes_sent != sent and not restated:  # lost while its write was on the way
            raise write_unsettled() from None
    try:
        ledger.arrive(unwaited)
        return serve()
    except Exception as error:  # noqa: BLE001
        raise_neutral(error)


def raise_neutral(error: Exception) -> NoReturn:
    """Raises the ledger's own error for a driver's (errors.py answers it), or the error itself."""
    neutral = backends.neutral(error)
    if neutral is error:
        raise error
    raise neutral from error


def served_on_a_new_session(view):
    """A view served again on a new session if its own was lost (on_a_new_session)."""

    @functools.wraps(view)
    def served(*args, **kwargs):
        return on_a_new_session(g.ledger, lambda: view(*args, **kwargs), getattr(view, "restated", False),
                                getattr(view, "unwaited", ()))

    return served


def read_unsized_body() -> None:
    """Reads a body sent without a Content-Length (chunked) whole, 413 past LEDGER_MAX_BODY.

    Werkzeug stops reading such a body at the limit and hands on what it read, which may be
    valid JSON of its own: the request would be served cut instead of refused.
    """
    environ, limit = request.environ, current_app.config["MAX_CONTENT_LENGTH"]
    if get_content_length(environ) is not None or "wsgi.input_terminated" not in environ:
        return
    stream, body = environ["wsgi.input"], bytearray()
    while len(body) <= limit:
        chunk = stream.read(min(65536, limit + 1 - len(body)))
        if not chunk:
            break
        body += chunk
    if len(body) > limit:
        raise RequestEntityTooLarge()
    environ.update({"wsgi.input": io.BytesIO(bytes(body)), "CONTENT_LENGTH": str(len(body))})
    for name in ("wsgi.input_terminated", "HTTP_TRANSFER_ENCODING"):  # now a body of known length
        environ.pop(name, None)


def json_body():
    """The request's JSON body (an empty body is an empty object); 400 in DRF's words when it is not JSON."""
    data = request.get_data(cache=True)
    if not data.strip():
        return {}
    try:
        body = json.loads(data)
        if json.detect_encoding(data) != "utf-8" or SURROGATE_ESCAPE.search(data):
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
        body = canonical(uuids_spelled_alike(json.loads(request.get_data(cache=True) or b"{}"))).encode()
    except (ValueError, RecursionError):
        body = request.get_data(cache=True)
    key = idempotency.Key.of(caller.id, text, request.method, path_uuids_spelled_alike(request.path), body, status)
    idempotency.check(g.ledger.conn, key)
    return key


def spelled_alike(text: str) -> str:
    """A UUID, hyphenated or not, in any case, as 32 lowercase hex digits."""
    return text.replace("-", "").lower()


def path_uuids_spelled_alike(text: str) -> str:
    """A path or URL with each UUID that is a segment of it spelled as 32 lowercase hex digits."""
    return UUID_IN_PATH.sub(lambda match: spelled_alike(match[0]), text)


def uuids_spelled_alike(body):
    """The body with the UUIDs it names (`resource`, `plan_period`, and those in `user` links) spelled
    as 32 lowercase hex digits, so that a retry naming them another way is the same request."""
    if isinstance(body, list):
        return [uuids_spelled_alike(item) for item in body]
    if not isinstance(body, dict):
        return body
    spelled = {}
    for name, value in body.items():
        if name in UUID_FIELDS and isinstance(value, str) and WHOLE_UUID.match(value.strip()):
            value = spelled_alike(value.strip())
        elif name == "user" and isinstance(value, str):
            value = path_uuids_spelled_alike(value)
        elif name == "usages":
            value = uuids_spelled_alike(value)
        spelled[name] = value
    return spelled
