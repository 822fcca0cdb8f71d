"""The application `ledger serve` runs in each gunicorn worker process."""

from . import create_app, server_errors


def application(database: str):
    """The API over the ledger at `database`, with this process's projector thread, answering
    gunicorn's own errors as JSON."""
    server_errors.install()
    return create_app({"DATABASE": database, "PROJECTOR": True})
