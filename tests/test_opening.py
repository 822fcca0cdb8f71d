"""Opening a ledger: a mistyped path is an error, not a new ledger; a non-ledger file is left alone;
a read-only copy can be checked; a read-only file is not served."""

import hashlib
import json
import os
import sqlite3

import pytest
from click.testing import CliRunner

from ledger.backends.sqlite import connection
from ledger.cli import cli

from .serving import free_port
from .world import RESOURCE

# Every command that must find an existing ledger, as a user types it after `--db PATH`.
NEEDS_A_LEDGER = {
    "serve": ["serve", "--port", "1"],
    "verify": ["verify"],
    "audit": ["audit", RESOURCE],
    "replay": ["replay", "--until", "1"],
    "export": ["export"],
    "report": ["report", "--period", "2026-03"],
    "rebuild": ["rebuild"],
    "roll-period": ["roll-period"],
    "token issue": ["token", "issue", "staff"],
    "token list": ["token", "list"],
    "token revoke": ["token", "revoke", "staff"],
}
READERS = {name: NEEDS_A_LEDGER[name] for name in ("verify", "audit", "replay", "export", "report")}


def run(path, args: list[str]):
    return CliRunner().invoke(cli, ["--db", str(path), *args])


def fingerprint(folder) -> dict[str, str]:
    """Every file of a folder with a digest of its bytes."""
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in sorted(os.listdir(folder))}


def assert_one_line_error(result, path) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", NEEDS_A_LEDGER)
def test_a_missing_database_is_refused_and_nothing_is_created(tmp_path, command):
    path = tmp_path / "mistyped.db"
    result = run(path, NEEDS_A_LEDGER[command])
    assert_one_line_error(result, path)
    assert "no such ledger" in result.output
    assert os.listdir(tmp_path) == []



@pytest.mark.parametrize("command", ["init", *NEEDS_A_LEDGER])
def test_a_database_named_by_a_url_of_no_backend_is_refused_in_one_line(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    url = "mysql://ledger@localhost/ledger"
    result = run(url, ["init"] if command == "init" else NEEDS_A_LEDGER[command])
    assert_one_line_error(result, url)
    assert "no backend for a database named by this URL" in result.output
    assert os.listdir(tmp_path) == []


def test_a_postgresql_server_that_does_not_answer_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"postgresql://ledger@127.0.0.1:{free_port()}/ledger"
    result = run(url, NEEDS_A_LEDGER["verify"])
    assert_one_line_error(result, url)
    assert "connection" in result.output and "refused" in result.output
    assert os.listdir(tmp_path) == []


def test_export_to_a_file_from_a_missing_database_writes_no_file(tmp_path):
    result = run(tmp_path / "mistyped.db", ["export", "--output", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 2
    assert os.listdir(tmp_path) == []


NOT_LEDGERS = {
    "random bytes": lambda path: path.write_bytes(bytes(range(256)) * 20),
    "an empty file": lambda path: path.write_bytes(b""),
    "a SQLite database without an event log": lambda path: sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit(),
    "a directory": lambda path: path.mkdir(),
}


@pytest.mark.parametrize("kind", NOT_LEDGERS)
@pytest.mark.parametrize("command", NEEDS_A_LEDGER)
def test_a_file_that_is_not_a_ledger_is_refused_untouched(tmp_path, command, kind):
    path = tmp_path / "other.db"
    NOT_LEDGERS[kind](path)
    before = fingerprint(tmp_path) if path.is_file() else os.listdir(tmp_path)
    result = run(path, NEEDS_A_LEDGER[command])
    assert_one_line_error(result, path)
    assert "not a ledger database" in result.output
    assert (fingerprint(tmp_path) if path.is_file() else os.listdir(tmp_path)) == before


@pytest.mark.parametrize("kind", ["random bytes", "a SQLite database without an event log"])
@pytest.mark.parametrize("command", [["init"], ["catalog", "load"], ["import"]])
def test_creating_commands_do_not_turn_another_file_into_a_ledger(tmp_path, command, kind):
    path, given = tmp_path / "other.db", tmp_path / "given.json"
    NOT_LEDGERS[kind](path)
    given.write_text("{}")
    before = fingerprint(tmp_path)
    result = run(path, command + [str(given)] * (command != ["init"]))
    assert_one_line_error(result, path)
    assert fingerprint(tmp_path) == before


def test_init_and_catalog_load_create_a_missing_database(tmp_path, catalog, now):
    assert run(tmp_path / "a.db", ["init"]).exit_code == 0
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "b.db"), "catalog", "load", "-"], input=json.dumps(catalog))
    assert result.exit_code == 0, result.output
    assert run(tmp_path / "a.db", ["verify"]).exit_code == 0
    assert run(tmp_path / "b.db", ["verify"]).exit_code == 0


def test_import_creates_a_missing_database(db_path, tmp_path):
    exported = tmp_path / "log.jsonl"
    assert run(db_path, ["export", "--output", str(exported)]).exit_code == 0
    result = run(tmp_path / "copy.db", ["import", str(exported)])
    assert result.exit_code == 0, result.output
    assert run(tmp_path / "copy.db", ["verify"]).exit_code == 0


def test_a_database_in_a_missing_folder_cannot_be_created(tmp_path):
    path = tmp_path / "no-such-folder" / "ledger.db"
    assert_one_line_error(run(path, ["init"]), path)
    assert os.listdir(tmp_path) == []


@pytest.fixture
def read_only_copy(db_path, tmp_path, monkeypatch):
    """The test ledger as a backup on read-only storage: a 0444 file in a 0555 folder, closed cleanly
    (no write-ahead log beside it). Root may write it all the same, so for root the ledger is told that
    the storage cannot be written, and opens it as it would then."""
    folder = tmp_path / "backup"
    folder.mkdir()
    source = sqlite3.connect(db_path)
    copy = sqlite3.connect(folder / "ledger.db")
    source.backup(copy)
    copy.close()
    source.close()
    path = folder / "ledger.db"
    path.chmod(0o444)
    folder.chmod(0o555)
    if os.geteuid() == 0:
        monkeypatch.setattr(connection, "writable", lambda _path: False)
    yield path
    folder.chmod(0o755)


@pytest.mark.parametrize("command", READERS)
def test_reading_commands_work_on_a_read_only_copy_and_change_nothing(read_only_copy, command):
    before = fingerprint(read_only_copy.parent)
    result = run(read_only_copy, READERS[command])
    assert result.exit_code == 0, result.output
    assert fingerprint(read_only_copy.parent) == before


def test_verify_of_a_read_only_copy_passes(read_only_copy):
    result = run(read_only_copy, ["verify"])
    assert "hash chain intact" in result.output
    assert "views identical to a rebuild" in result.output


@pytest.mark.parametrize("command", ["serve", "rebuild", "roll-period", "token issue"])
def test_writing_commands_refuse_a_read_only_file_in_one_line(read_only_copy, command):
    before = fingerprint(read_only_copy.parent)
    result = run(read_only_copy, NEEDS_A_LEDGER[command])
    assert_one_line_error(result, read_only_copy)
    assert "read-only" in result.output
    assert fingerprint(read_only_copy.parent) == before


def test_a_read_only_open_reads_a_write_ahead_log_left_beside_the_file(db_path, monkeypatch):
    """A copy taken with its -wal file is read through the log, not as if the log were not there."""
    monkeypatch.setattr(connection, "writable", lambda _path: False)
    writer = sqlite3.connect(db_path)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    count = writer.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    assert os.path.exists(f"{db_path}-wal")
    assert "immutable" not in connection.read_only_uri(db_path)
    reader = connection.connect(db_path, read_only=True)
    assert reader.execute("SELECT COUNT(*) FROM events").fetchone()[0] == count
    reader.close()
    writer.close()


def test_a_damaged_database_is_one_line(db_path):
    with open(db_path, "r+b") as file:
        file.seek(4096)
        file.write(b"\xff" * 8192)  # the pages after the header: the schema and the log's first pages
    result = run(db_path, ["verify"])
    assert_one_line_error(result, db_path)
