"""set_usage's field checks: the plain reports site agents send are read without the schema, and
must be read exactly as the schema reads them; any other body goes to the schema."""

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from api import schemas

RESOURCE_TEXT = "7a8b9c0d-1e2f-4d7e-c05b-6c7d8e9f0a1b"

# Text values near the edges of every field's rules (blank, padded, too long or too precise, NUL
# characters, uuids in several spellings): reports of text alone are the ones read without the schema.
amount_texts = st.one_of(
    st.decimals().map(str),
    st.integers(0, 4).flatmap(lambda places: st.decimals(places=places, allow_nan=False, allow_infinity=False)).map(str),
    st.sampled_from(["5", " 7.25 ", "1e3", "-0.5", "12345678901234567890", "1" * 19 + ".5", "0.001", "", "abc", "NaN"]),
)
texts = st.one_of(st.text(max_size=8), st.sampled_from(["cpu", " ram ", "", "  ", "gpu\x00", "x" * 50, "y" * 51, "d" * 2001]))
resource_texts = st.one_of(
    st.uuids().map(str), st.uuids().map(lambda u: u.hex), st.uuids().map(lambda u: "{" + str(u) + "}"),
    st.uuids().map(lambda u: u.urn), st.uuids().map(lambda u: f" {u} "),
    st.sampled_from([RESOURCE_TEXT, RESOURCE_TEXT.upper(), "", "not-a-uuid"]),
)
# And other JSON values in their place, other fields, other shapes.
others = st.one_of(st.integers(-10**21, 10**21), st.floats(), st.booleans(), st.none(), st.lists(st.text(max_size=2), max_size=1))
items = st.one_of(
    st.fixed_dictionaries({"type": texts, "amount": amount_texts}, optional={"description": texts}),
    st.fixed_dictionaries({"type": texts | others, "amount": amount_texts | others}, optional={
        "description": texts | others, "missing_usage_policy": st.sampled_from(["none", "reuse", "zero", "other"]),
        "recurring": st.booleans(), "extra": texts,
    }),
    texts | others,
)
bodies = st.one_of(
    st.fixed_dictionaries({"usages": st.lists(items, max_size=3)}, optional={"resource": resource_texts}),
    st.fixed_dictionaries({"usages": st.lists(items, max_size=3) | others}, optional={
        "resource": resource_texts | others, "plan_period": resource_texts,
        "date": st.sampled_from(["2026-03-01T00:00:00Z", "x"]), "extra": texts,
    }),
    st.lists(items, max_size=2), texts | others,
)


def schema_load(body):
    try:
        return schemas.load(schemas.SET_USAGE, body)
    except ValidationError as error:
        return error


@settings(max_examples=3000)
@given(bodies)
def test_a_body_read_without_the_schema_is_read_as_the_schema_reads_it(body):
    expected = schema_load(body)
    plain = schemas._plain_report(body)
    if isinstance(expected, ValidationError):
        assert plain is None  # left to the schema, which words the errors
    else:
        assert plain in (None, expected)
        assert schemas.load_set_usage(body) == expected


def test_a_site_agents_report_is_read_without_the_schema():
    for body in (
        {"resource": RESOURCE_TEXT, "usages": [{"type": "cpu", "amount": "12.5"}, {"type": "ram", "amount": "3"}]},
        {"resource": uuid.UUID(RESOURCE_TEXT).hex, "usages": [{"type": "gpu", "amount": "1.50", "description": "nightly"}]},
        {"resource": RESOURCE_TEXT, "usages": []},
    ):
        assert schemas._plain_report(body) == schema_load(body) is not None
