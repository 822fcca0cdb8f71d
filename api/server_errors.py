"""gunicorn's own answers to requests it cannot parse (a bad request line, headers too large), as JSON.

gunicorn writes these itself, as HTML pages, before the application sees the request; every
other answer of the API is JSON in Django REST framework's shape.
"""

import json

from gunicorn import util


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's `util.write_error` with a `{"detail": …}` body."""
    body = json.dumps({"detail": mesg or reason})
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, (head + body).encode("latin1"))


def install() -> None:
    """Makes this process's gunicorn (and the workers it forks) answer its own errors with write_json_error."""
    util.write_error = write_json_error
