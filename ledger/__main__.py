"""`python -m ledger`: the `ledger` command."""

from ledger.cli import cli

cli()
