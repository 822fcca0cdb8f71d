"""ledger/output.py: the formats of the read commands, as pure functions of rows."""

import json

from ledger.output import render

ROWS = [{"period": "2026-03", "usage": "10.00", "note": None}, {"period": "2026-04", "usage": "1,5", "note": "x"}]


def test_a_table_keeps_figures_as_given_and_shows_none_as_blank():
    lines = render(ROWS, None).splitlines()
    assert lines[0].split() == ["period", "usage", "note"]
    assert lines[2].split() == ["2026-03", "10.00"]
    assert lines[3].split() == ["2026-04", "1,5", "x"]


def test_a_table_shows_the_rows_people_read_when_asked():
    lines = render(ROWS, None, table=lambda row: {"month": row["period"][5:]}).splitlines()
    assert [line.strip() for line in lines] == ["month", "-------", "03", "04"]


def test_csv_quotes_what_needs_it_and_has_every_field():
    assert render(ROWS, "csv", table=lambda row: {}) == 'period,usage,note\n2026-03,10.00,\n2026-04,"1,5",x\n'


def test_csv_of_no_rows_is_the_header_alone_and_a_table_of_none_is_empty():
    assert render([], "csv", ("period", "usage")) == "period,usage\n"
    assert render([], None, ("period", "usage")) == ""


def test_json_is_one_array_and_nl_one_object_a_line():
    assert json.loads(render(ROWS, "json")) == ROWS
    assert [json.loads(line) for line in render(ROWS, "nl").splitlines()] == ROWS
