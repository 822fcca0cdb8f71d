"""Waldur's list conventions: a bare JSON array, `X-Result-Count`, a `Link` header, `field` selection."""

import functools
import math
from urllib.parse import urlencode

from flask import jsonify, request

from . import links
from .errors import ApiError

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 300


def page_size() -> int:
    """`page_size` clamped to 300; anything but a positive whole number gives the default."""
    text = request.args.get("page_size", "")
    if text.isdecimal() and int(text) > 0:  # isdigit() takes "²", which int() refuses
        return min(int(text), MAX_PAGE_SIZE)
    return DEFAULT_PAGE_SIZE


def page_number(total: int, size: int) -> int:
    """The 1-based page asked for; 404 "Invalid page." when it is not a number or past the end."""
    last = max(1, math.ceil(total / size))
    text = request.args.get("page", "1")
    if text == "last":
        return last
    if not text.isdecimal() or not 1 <= int(text) <= last:
        raise ApiError(404, {"detail": "Invalid page."})
    return int(text)


def link_header(number: int, total: int, size: int) -> str:
    """Links to the first, previous, next and last pages: this request's absolute URL, its
    parameters kept, with `page=N` except for page 1."""
    return page_links(links.here(), request.query_string, number, total, size)


@functools.lru_cache(maxsize=256)
def page_links(here: str, query_string: bytes, number: int, total: int, size: int) -> str:
    """link_header's text, kept for the next list read alike: re-encoding the parameters was an
    eighth of a list page's own work. It reads request.args, which `query_string` determines."""
    query = urlencode([(key, value) for key, value in request.args.items(multi=True) if key != "page"])
    base = here + (f"?{query}&" if query else "?")

    def page_url(page: int) -> str:
        return f"{base}page={page}" if page > 1 else base[:-1]

    last = max(1, math.ceil(total / size))
    pages = [(page_url(1), "first")]
    if number > 1:
        pages.append((page_url(number - 1), "prev"))
    if number < last:
        pages.append((page_url(number + 1), "next"))
    pages.append((page_url(last), "last"))
    return ", ".join(f'<{url}>; rel="{rel}"' for url, rel in pages)


def field_selector(keys) -> callable:
    """Keeps only the keys named by `field` parameters; all keys when none of them is a known key."""
    wanted = [name for name in request.args.getlist("field") if name in keys]
    if not wanted:
        return lambda record: record
    return lambda record: {name: record[name] for name in wanted}


def select_fields(record: dict) -> dict:
    return field_selector(record)(record)


def paginated(fetch, count):
    """A list response: `fetch(limit, offset)` gives the page's records, already in wire format, and
    `count()` their total. The first page, which is always there, is read before the count: its
    read may carry the request's arrival (api/requests.py arrives_with_first_read), which is
    best confirmed before anything else is computed. Another page needs the count first."""
    size = page_size()
    if request.args.get("page", "1") == "1":
        records = fetch(size, 0)
        total = count()
        number = 1
    else:
        total = count()
        number = page_number(total, size)
        records = fetch(size, (number - 1) * size)
    select = field_selector(records[0] if records else ())
    body = [select(record) for record in records]
    response = jsonify(body)
    response.headers["X-Result-Count"] = str(total)
    response.headers["Link"] = link_header(number, total, size)
    return response


def single(record: dict):
    return jsonify(select_fields(record))
