"""The catalog loader fuzzed with hypothesis: any document is loaded or rejected whole, never anything else."""

import json
import os

import click
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.cli import load_catalog
from ledger.commands.catalog import CatalogFile

from .world import catalog_document

CI = bool(os.environ.get("CI"))  # CI replays the same examples every run; elsewhere each run explores anew
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
                database=None, derandomize=CI)
SECTIONS = list(CatalogFile().fields)
FIELDS = sorted({name for section in catalog_document().values() for item in section for name in item}
                | {"components", "plan_periods", "type", "billing_type", "start", "end", "revoked", "limit_amount"})

# Values that have broken loaders: out of SQLite's INTEGER range, out of datetime's range, lone surrogates, SQL.
HOSTILE = [
    None, True, -1, 0, 2**63, -(2**63) - 1, 10**400, 1e308, float("nan"), "", " ", "\x00", "\ud800", "x" * 10_000,
    "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00", "'; DROP TABLE events; --", [], {},
]
scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.sampled_from(HOSTILE)
    | st.sampled_from(["OK", "owner", "usage", "0a000000000000000000000000000001", "2026-01-01T00:00:00Z"])
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), inner, max_size=4),
                           max_leaves=20)
documents = st.dictionaries(st.sampled_from(SECTIONS) | st.text(max_size=5),
                            st.lists(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8), max_size=3)
                            | json_values, max_size=5)


def loaded_or_rejected_whole(ledger, text) -> None:
    """Loads `text`; a rejection must be a ClickException and must have appended nothing."""
    before = ledger.store.count()
    try:
        load_catalog(ledger, text)
    except click.ClickException:
        assert ledger.store.count() == before


def paths(value, prefix=()):
    """Every path into a JSON document, the document itself included."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


def replaced(document, path, value):
    if not path:
        return value
    copy = list(document) if isinstance(document, list) else dict(document)
    copy[path[0]] = replaced(document[path[0]], path[1:], value)
    return copy


def removed(document, path):
    copy = list(document) if isinstance(document, list) else dict(document)
    if len(path) == 1:
        del copy[path[0]]
    else:
        copy[path[0]] = removed(document[path[0]], path[1:])
    return copy


VALID_PATHS = list(paths(catalog_document()))


def renewed(document, n: int, key=None):
    """The document with every id, UUID, username and token made new: loading it defines new things only,
    so that a hostile value meets the loader's checks rather than a clash with what is already there."""
    if isinstance(document, dict):
        return {name: renewed(value, n, name) for name, value in document.items()}
    if isinstance(document, list):
        return [renewed(value, n, key) for value in document]
    if key == "id":
        return document + 1000 * n
    if key in ("username", "token"):
        return f"{document}-{n}"
    if isinstance(document, str) and key and (key == "uuid" or key.endswith("_uuid")):
        return f"{document[:8]}{n:08x}{document[16:]}"
    return document


def test_every_field_of_a_new_catalog_made_hostile_is_loaded_or_rejected_whole(ledger):
    ledger.conn.execute("PRAGMA synchronous=OFF")  # a scratch database: its durability is not what is tested
    first_items = [path for path in VALID_PATHS[1:] if all(step == 0 for step in path if isinstance(step, int))]
    cases = [(path, value) for path in first_items for value in HOSTILE]  # the other items' fields are alike
    for n, (path, value) in enumerate(cases, 1):
        loaded_or_rejected_whole(ledger, json.dumps(replaced(renewed(catalog_document(), n), path, value)))
    assert ledger.store.verify_chain() == ledger.store.count()


def test_a_renewed_catalog_defines_only_new_things(ledger):
    before = ledger.store.count()
    load_catalog(ledger, json.dumps(renewed(catalog_document(), 1)))
    appended = list(ledger.store.read(after=before))
    catalog_events = [event for event in ledger.store.read(until=before) if event.type != "BillingPeriodStarted"]
    assert len(appended) == len(catalog_events)
    assert all(event.version == 1 for event in appended)


def test_json_nested_beyond_the_parser_is_rejected(ledger):
    loaded_or_rejected_whole(ledger, "[" * 100_000)


@FUZZ
@given(text=st.binary(max_size=200) | st.text(max_size=200))
def test_arbitrary_text_is_loaded_or_rejected_whole(ledger, text):
    loaded_or_rejected_whole(ledger, text)


@FUZZ
@given(document=documents)
def test_arbitrary_catalog_shaped_documents_are_loaded_or_rejected_whole(ledger, document):
    loaded_or_rejected_whole(ledger, json.dumps(document))


@FUZZ
@given(path=st.sampled_from(VALID_PATHS), value=json_values)
def test_a_valid_catalog_with_any_value_replaced_is_loaded_or_rejected_whole(ledger, path, value):
    loaded_or_rejected_whole(ledger, json.dumps(replaced(catalog_document(), path, value)))


@FUZZ
@given(path=st.sampled_from(VALID_PATHS[1:]))
def test_a_valid_catalog_with_any_part_removed_is_loaded_or_rejected_whole(ledger, path):
    loaded_or_rejected_whole(ledger, json.dumps(removed(catalog_document(), path)))
