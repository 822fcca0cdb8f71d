"""How read commands print rows: a table for people, or CSV, JSON or JSON Lines for programs.

The formats are those of sqlite-utils and Datasette: a plain table by default, `--csv`,
`--json` (one array) and `--nl` (one JSON object a line). A command builds a list of dicts
and calls `emit(rows, fmt)`, with `table=` to show people a shorter row than programs get;
`output_format` is the click decorator that picks `fmt`.
"""

import csv
import io
import json
from collections.abc import Callable, Iterable

import click
import tabulate

def output_format(command):
    """Adds `--csv`, `--json` and `--nl` to a click command, passed to it as `fmt` (None: a table)."""
    for name, help_text in reversed((
        ("csv", "Print CSV with a header row."),
        ("json", "Print one JSON array."),
        ("nl", "Print one JSON object a line (newline-delimited JSON)."),
    )):
        command = click.option(f"--{name}", "fmt", flag_value=name, help=help_text)(command)
    return command


def render(rows: list[dict], fmt: str | None, columns: Iterable[str] = (),
           table: Callable[[dict], dict] | None = None) -> str:
    """`rows` in `fmt` ('table' when None). CSV has the rows' keys as its header (`columns` when
    there are no rows); the table shows `table(row)` for each row when given, else the row."""
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    if fmt == "nl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if fmt == "csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, list(rows[0] if rows else columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return text.getvalue()
    shown = [table(row) for row in rows] if table else rows
    if not shown:
        return ""
    cells = [[_cell(value) for value in row.values()] for row in shown]
    # Figures stay as given ("10.00", not 10.0): cells are not parsed as numbers.
    return tabulate.tabulate(cells, headers=list(shown[0]), tablefmt="simple", disable_numparse=True) + "\n"


def emit(rows: list[dict], fmt: str | None, columns: Iterable[str] = (),
         table: Callable[[dict], dict] | None = None) -> None:
    """Prints `rows` in `fmt` to standard output (see `render`); an empty table says so on standard error."""
    if fmt is None and not rows:
        click.echo("no rows", err=True)
    click.echo(render(rows, fmt, columns, table), nl=False)


def _cell(value) -> str:
    return "" if value is None else str(value)
