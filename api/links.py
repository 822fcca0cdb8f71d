"""Absolute links in responses: under `LEDGER_BASE_URL` when it is set, else under the request's own root.

A link built from the Host a client sent would hand that client's choice to everyone who reads it.
"""

import os
from urllib.parse import urlparse

from flask import request


def configured_base_url() -> str | None:
    """`LEDGER_BASE_URL` with one trailing slash, or None when unset; ValueError unless an absolute http(s) URL."""
    text = os.environ.get("LEDGER_BASE_URL", "").strip()
    if not text:
        return None
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.query or parsed.fragment:
        raise ValueError(f"LEDGER_BASE_URL must be an absolute http(s) URL, not {text!r}")
    return text.rstrip("/") + "/"


def root() -> str:
    """The URL that `api/...` paths are appended to, ending in a slash."""
    # As request.url_root, as a URI: werkzeug's also turns it into an IRI, a tenth of a list's time.
    # The request looked up once: each attribute read through flask's proxy looks it up again.
    here = request._get_current_object()
    return configured_base_url() or f"{here.scheme}://{here.host}{here.script_root}/"


def to(kind: str, uuid: str) -> str:
    """The URL of an object of a `kind` such as `marketplace-offering-users`, under root()."""
    return f"{root()}api/{kind}/{uuid}/"


def here() -> str:
    """This request's URL without its query, under root()."""
    return root() + request.path.lstrip("/")
