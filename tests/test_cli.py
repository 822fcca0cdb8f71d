"""The `ledger` command: every command documents itself with an example; init and catalog load work."""

import json
import sqlite3
from importlib.metadata import version

import click
import pytest
from click.testing import CliRunner

from ledger.cli import cli


def commands(group: click.Group, prefix: str = "ledger"):
    """(full name, command) for the group and every command under it, subgroups included."""
    yield prefix, group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", command


ALL_COMMANDS = dict(commands(cli))


def test_the_walk_reaches_subcommands():
    assert {"ledger init", "ledger catalog", "ledger catalog load", "ledger rebuild"} <= set(ALL_COMMANDS)


@pytest.mark.parametrize("name", ALL_COMMANDS)
def test_every_command_has_help_with_an_example(name):
    command = ALL_COMMANDS[name]
    assert command.help and command.help.strip(), f"{name} has no help text"
    assert any(line.strip().startswith("Example:") for line in command.help.splitlines()), (
        f"{name} help has no 'Example:' line"
    )


@pytest.mark.parametrize("name", ALL_COMMANDS)
def test_every_command_answers_help(name):
    result = CliRunner().invoke(cli, [*name.split()[1:], "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output


def test_the_db_option_names_both_kinds_of_database():
    output = " ".join(CliRunner().invoke(cli, ["--help"]).output.split())  # click wraps its lines
    assert "a SQLite file's path, or a postgresql:// URL (LEDGER_DB)" in output


def test_init_creates_a_database(tmp_path):
    path = tmp_path / "new.db"
    result = CliRunner().invoke(cli, ["--db", str(path), "init"])
    assert result.exit_code == 0, result.output
    assert f"initialised {path}" in result.output
    log, views = (sqlite3.connect(file) for file in (path, f"{path}.views"))
    log_tables, view_tables = ({name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                               for conn in (log, views))
    log.close()
    views.close()
    assert {"events", "idempotency_keys", "ledger_keys"} == log_tables  # the log, and what is written with it
    assert {"projection_checkpoints", "customers", "component_usages"} <= view_tables


def test_init_takes_the_database_from_ledger_db(tmp_path):
    path = tmp_path / "from-env.db"
    result = CliRunner().invoke(cli, ["init"], env={"LEDGER_DB": str(path)})
    assert result.exit_code == 0, result.output
    assert path.exists()


def test_init_twice_keeps_the_log(tmp_path, catalog, now):
    path = str(tmp_path / "ledger.db")
    runner = CliRunner()
    runner.invoke(cli, ["--db", path, "catalog", "load", "-"], input=json.dumps(catalog))
    result = runner.invoke(cli, ["--db", path, "init"])
    assert result.exit_code == 0, result.output
    conn = sqlite3.connect(f"{path}.views")
    (customers,) = conn.execute("SELECT COUNT(*) FROM customers").fetchone()
    conn.close()
    assert customers == len(catalog["customers"])


def test_catalog_load_of_an_unchanged_file_reports_nothing_appended(tmp_path, catalog, now):
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_text(json.dumps(catalog))
    load = ["--db", str(tmp_path / "ledger.db"), "catalog", "load", str(catalog_file)]
    first, second = CliRunner().invoke(cli, load), CliRunner().invoke(cli, load)
    assert (first.exit_code, second.exit_code) == (0, 0), first.output + second.output
    assert "catalog loaded: 0 event(s) appended" not in first.output
    assert "catalog loaded: 0 event(s) appended" in second.output


def test_catalog_load_prints_every_problem_and_fails(tmp_path, catalog, now):
    catalog["customers"][0]["uuid"] = "nope"
    catalog["resources"][0]["state"] = "Running"
    catalog_file = tmp_path / "bad.json"
    catalog_file.write_text(json.dumps(catalog))
    path = tmp_path / "ledger.db"
    result = CliRunner().invoke(cli, ["--db", str(path), "catalog", "load", str(catalog_file)])
    assert result.exit_code != 0
    assert "$.customers[0].uuid: Not a valid UUID." in result.output
    assert "$.resources[0].state: Must be one of:" in result.output
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (0,)
    conn.close()


def test_catalog_load_of_a_missing_file_fails(tmp_path):
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "ledger.db"), "catalog", "load", str(tmp_path / "none.json")])
    assert result.exit_code != 0
    assert "No such file or directory" in result.output


def test_version_prints_the_packages_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert (result.exit_code, result.output) == (0, f"ledger, version {version('usage-ledger')}\n")
