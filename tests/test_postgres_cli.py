"""Every command behaves alike on PostgreSQL: each help example runs on the demo's ledger there, and the
reading commands print what they print for the same ledger in a SQLite file."""

import pytest
from click.testing import CliRunner

from ledger import demo
from ledger.cli import cli
from ledger.commands.catalog import load
from ledger.database import Ledger

from .test_cli import ALL_COMMANDS
from .test_help_examples import ORDER, SERVERS, database_of, example

pytestmark = pytest.mark.postgresql


def demo_ledger(db: str) -> str:
    ledger = Ledger(db)
    ledger.init()
    load(ledger, demo.catalog_text())
    demo.seed_usage(ledger)
    ledger.close()
    return db


def on(db: str, args: list[str]) -> list[str]:
    """An example's arguments with its `--db` replaced by `db`."""
    args = list(args)
    if "--db" in args:
        args[args.index("--db") + 1] = db
        return args
    return ["--db", db, *args]


def test_every_example_runs_on_postgresql(postgres_server, tmp_path, now, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "catalog.json").write_text(demo.catalog_text())
    demo_db, imported_db = demo_ledger(postgres_server.new_database()), postgres_server.new_database()
    names = sorted((name for name in ALL_COMMANDS if name not in SERVERS),
                   key=lambda name: ORDER.index(name) if name in ORDER else -1)
    for name in names:
        args = example(name)
        # The import example fills an empty database; every other example reads or changes the demo's.
        result = CliRunner().invoke(cli, on(imported_db if name == "ledger import" else demo_db, args))
        assert result.exit_code == 0, f"{name}: `{' '.join(args)}` failed on PostgreSQL:\n{result.output}"


@pytest.mark.parametrize("name", ["ledger audit", "ledger replay", "ledger report"])
def test_reading_commands_print_the_same_on_both_backends(postgres_url, tmp_path, now, name):
    args = example(name)
    assert database_of(args) == "demo.db"
    outputs = [CliRunner().invoke(cli, on(demo_ledger(db), args)) for db in (str(tmp_path / "demo.db"), postgres_url)]
    assert [result.exit_code for result in outputs] == [0, 0], [result.output for result in outputs]
    assert outputs[0].stdout == outputs[1].stdout
