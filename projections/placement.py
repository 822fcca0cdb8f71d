"""The names a usage record (or a user's share of one) shows of where it is placed: its resource's,
offering's, project's and customer's, and its component's name and unit.

A page of records is read on its own table, and these names are added from the catalog's rows, which
a process keeps. Joined into the page's statement, the five catalog tables were most of its work on
PostgreSQL: a first page of ten at 100,000 records took the server 0.036 ms with them and 0.010 ms
without, and its round trip 0.097 ms and 0.054 ms. The names kept are those of one version of the
catalog's rows: the seq of the last event that changed the views' rows, which every catalog event
moves (projections/runner.py).
"""

import json
from collections.abc import Sequence

from ledger.backends import Connection

from . import sql

TABLES = {"resource": "resources", "offering": "offerings", "project": "projects", "customer": "customers"}
# Each kind of name by the record's column that finds it: its component's by its offering (and its type).
FOUND_BY = (("resource", "resource_uuid"), ("offering", "offering_uuid"), ("project", "project_uuid"),
            ("customer", "customer_uuid"), ("component", "offering_uuid"))
MAX_KEPT = 200_000  # names kept per database, past which they are read again as pages ask for them


class KeptNames:
    """The names read at or after one version of the catalog's rows, per database: by kind, by uuid.
    Unlike projections.kept.Kept, which keeps an answer at one version exactly, names read at a later
    version serve a request that found an earlier one, and a page's missing names are read together."""

    def __init__(self):
        self.by_database: dict[str, tuple[int, dict[str, dict]]] = {}

    def at(self, database: str, version: int) -> dict[str, dict]:
        """The names kept for `database` where a request that found the catalog at `version` may use
        them: names read at a later version are as good (newer than what it arrived after), names of
        an earlier version are dropped. (Two threads that replace them together lose only names.)"""
        kept_version, names = self.by_database.get(database, (-1, None))
        if names is None or version > kept_version:
            names = empty()
            self.by_database[database] = (version, names)
        return names


KEPT = KeptNames()


def empty() -> dict[str, dict]:
    return {kind: {} for kind, _ in FOUND_BY}


def named(conn: Connection, rows: Sequence[dict], arriving=None,
          type_key: str = "type", name_key: str | None = "name") -> Sequence[dict]:
    """`rows` (records with the `*_uuid` of their placement and their component's type under
    `type_key`) with `resource_name`, `offering_name`, `project_name`, `customer_name`, and their
    component's name (under `name_key`, unless None) and `measured_unit` (None where the offering has
    no such component). In a request, whose Ledger `arriving` read the rows, the names kept for the
    version of the catalog's rows that its arrival found (Ledger.found); else every name is read."""
    names = KEPT.at(arriving.path, arriving.found[1]) if arriving is not None else empty()
    if not filled(rows, names, type_key, name_key):
        if sum(map(len, names.values())) > MAX_KEPT:
            names.update(empty())
        missing = {kind: {row[column] for row in rows}.difference(names[kind]) for kind, column in FOUND_BY}
        for kind, found in read(conn, missing).items():
            names[kind].update(found)
        filled(rows, names, type_key, name_key)
    return rows


def filled(rows: Sequence[dict], names: dict[str, dict], type_key: str, name_key: str | None) -> bool:
    """Whether `names` held every name of `rows`, which it added to them."""
    resources, offerings, projects, customers, components = (names[kind] for kind, _ in FOUND_BY)
    try:
        for row in rows:  # written out: a page asks this of each of its records
            row["resource_name"] = resources[row["resource_uuid"]]
            row["offering_name"] = offerings[row["offering_uuid"]]
            row["project_name"] = projects[row["project_uuid"]]
            row["customer_name"] = customers[row["customer_uuid"]]
            name, row["measured_unit"] = components[row["offering_uuid"]].get(row[type_key], (None, None))
            if name_key:
                row[name_key] = name
    except KeyError:
        return False
    return True


def read(conn: Connection, missing: dict[str, set]) -> dict[str, dict]:
    """The names of the placements `missing` names (uuids by kind), in one statement, by kind and
    uuid as `named` keeps them: a name (None for a row not found), or for an offering's components,
    each one's name and unit by its type."""
    wanted = {kind: uuids for kind, uuids in missing.items() if uuids}
    in_list = sql.dialect(conn).json_in.format
    selects, parameters = [], []
    for kind, uuids in wanted.items():
        if kind == "component":
            selects.append("SELECT 'component', offering_uuid, type, name, measured_unit FROM components"
                           f" WHERE {in_list('offering_uuid')}")
        else:
            selects.append(f"SELECT '{kind}', uuid, name, NULL, NULL FROM {TABLES[kind]} WHERE {in_list('uuid')}")
        parameters.append(json.dumps(sorted(uuids)))
    found = {kind: {uuid: {} if kind == "component" else None for uuid in uuids} for kind, uuids in wanted.items()}
    for kind, uuid, text, name, unit in conn.execute(" UNION ALL ".join(selects), parameters):
        if kind == "component":  # text: the component's type
            found[kind][uuid][text] = (name, unit)
        else:  # text: the name
            found[kind][uuid] = text
    return found
