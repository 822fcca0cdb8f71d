"""Every command's help example runs, as printed, against the demo's data."""

import shlex
import shutil

import pytest
from click.testing import CliRunner

from ledger import demo
from ledger.cli import cli
from ledger.commands.catalog import load
from ledger.database import Ledger

from .test_cli import ALL_COMMANDS

# These serve HTTP until stopped; tests/test_demo.py runs the demo and tests/conftest.py serves.
SERVERS = {"ledger", "ledger serve", "ledger demo"}
# An example that reads a file another example writes runs after it.
ORDER = ["ledger export", "ledger import"]


def example(name: str) -> list[str]:
    line = next(line for line in ALL_COMMANDS[name].help.splitlines() if line.strip().startswith("Example:"))
    words = shlex.split(line.split("Example:", 1)[1])
    assert words[0] == "ledger", f"{name}: the example does not start with `ledger`"
    return words[1:]


def database_of(args: list[str]) -> str:
    return args[args.index("--db") + 1] if "--db" in args else "ledger.db"


@pytest.fixture
def demo_dir(tmp_path, now, monkeypatch):
    """A directory holding the demo's ledger under every name the examples use, and its catalog file."""
    ledger = Ledger(str(tmp_path / "demo.db"))
    ledger.init()
    load(ledger, demo.catalog_text())
    demo.seed_usage(ledger)
    ledger.close()
    (tmp_path / "catalog.json").write_text(demo.catalog_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_example_runs_against_the_demo(demo_dir):
    names = sorted((name for name in ALL_COMMANDS if name not in SERVERS),
                   key=lambda name: ORDER.index(name) if name in ORDER else -1)
    for name in names:
        args = example(name)
        database = demo_dir / database_of(args)
        # A new database for the examples that create one from a file (import); the demo's for the rest.
        if not database.exists() and name != "ledger import":
            shutil.copy(demo_dir / "demo.db", database)
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, f"{name}: `{' '.join(args)}` failed:\n{result.output}"


@pytest.mark.parametrize("name", ["ledger audit", "ledger replay", "ledger report"])
def test_read_examples_print_rows_of_the_demo(demo_dir, name):
    args = example(name)
    assert database_of(args) == "demo.db"
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) > 2, f"{name}: the example shows no rows:\n{result.stdout}"
