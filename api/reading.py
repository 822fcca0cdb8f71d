"""The read endpoints of a view: a list and a single record, limited to what the caller may read.

A view is a projection module with `ORDER_COLUMNS`, `KEPT_FILTERS`, `count(conn, scopes, filters)`
and `records(conn, scopes, filters, order, limit, offset)`.
"""

from collections.abc import Callable

from flask import g

from ledger.rules.access import Caller
from projections import usages

from . import filters, pagination
from .auth import authenticate
from .caching import CountCache, ViewCache
from .errors import not_found


def read_scopes(caller: Caller) -> dict | None:
    """The scopes a caller reads through; None (no limit) for staff and support."""
    return None if caller.sees_everything else caller.visible_scopes()


def listing(view, parse_filters: Callable[[], dict], wire: Callable[[dict], dict]):
    """A paginated list of the view's records that the caller may read, filtered and ordered by the query."""
    caller = authenticate(g.ledger.conn)
    found = parse_filters()
    order = filters.ordering(tuple(view.ORDER_COLUMNS))
    conn, scopes = g.ledger.conn, narrowed(read_scopes(caller), found)

    def fetch(limit, offset):
        return [wire(row) for row in view.records(conn, scopes, found, order, limit, offset, g.ledger)]

    return pagination.paginated(fetch, lambda: counted(view, conn, scopes, found))


VISIBLE = ViewCache()  # see `narrowed`


def narrowed(scopes: dict | None, found: dict) -> dict | None:
    """The scopes as an offering filter narrows them: None when the caller sees the whole offering
    (projections/usages.py visible_scopes), kept until the catalog's rows change."""
    if scopes is None or "offering_uuid" not in found:
        return scopes
    return VISIBLE.get((repr(scopes), found["offering_uuid"]),
                       lambda: usages.visible_scopes(g.ledger.conn, scopes, found), rows_only=True)


COUNTS = ViewCache()  # counts filtered on values that reports change (date, policy), until the next write
KEPT_COUNTS = CountCache()  # the others, until rows change, grown by the rows added since


def counted(view, conn, scopes: dict | None, found: dict) -> int:
    """The view's count of matching records; counting grows with the matching rows, so it is cached."""
    key = (view.NAME, repr(scopes), repr(sorted(found.items())))
    if view.KEPT_FILTERS.issuperset(found):
        return KEPT_COUNTS.get(key, lambda mark: view.count_since(conn, scopes, found, mark))
    return COUNTS.get(key, lambda: view.count(conn, scopes, found))


def retrieval(view, uuid: str, wire: Callable[[dict], dict]):
    """One record of the view; 404 when it does not exist or the caller may not read it."""
    caller = authenticate(g.ledger.conn)
    rows = view.records(g.ledger.conn, read_scopes(caller), {"uuid": uuid}, [], 1, arriving=g.ledger)
    if not rows:
        raise not_found()
    return pagination.single(wire(rows[0]))
