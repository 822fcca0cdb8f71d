"""Responses encoded by orjson (api/json_provider.py): the same JSON as the standard encoder's, in
the same key order, and the standard encoder's output for what orjson refuses."""

import dataclasses
import datetime as dt
import json

import pytest


@pytest.mark.parametrize("value", [
    {"name": "Café Ωmega", "usage": "12.50", "recurring": False, "modified_by": None, "n": 7, "share": 0.25},
    [{"z": 1, "a": [1, {"b": "ß"}]}, "", {}],
    {"big": 2 ** 70},  # past 64 bits: orjson refuses it
    {"lone": "\ud800"},  # not text orjson encodes: the standard encoder escapes it
])
def test_a_response_carries_the_same_json_in_the_same_key_order(app, value):
    with app.app_context():
        body = app.json.response(value).get_data()
    assert json.loads(body) == value
    assert list(json.loads(body)[0] if isinstance(value, list) else json.loads(body)) == list(
        value[0] if isinstance(value, list) else value)


def test_dates_and_dataclasses_are_encoded_as_flask_encodes_them(app):
    @dataclasses.dataclass
    class Point:
        x: int

    moment = dt.datetime(2026, 12, 5, 10, 0, tzinfo=dt.timezone.utc)
    with app.app_context():
        body = json.loads(app.json.response({"at": moment, "point": Point(3)}).get_data())
    assert body == {"at": "Sat, 05 Dec 2026 10:00:00 GMT", "point": {"x": 3}}


def test_non_ascii_text_is_sent_as_utf8(app):
    with app.app_context():
        assert app.json.response({"name": "Café"}).get_data() == '{"name":"Café"}\n'.encode()
