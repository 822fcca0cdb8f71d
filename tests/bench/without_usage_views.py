"""An experiment, not a mode of the ledger: the ledger with its usage views left out of writes.

Every write still decides, appends to the hash-chained log, moves the views' checkpoint and
commits durably; only the folding of UsageReported events into the usage-record and
user-usage views is skipped (their lists then go stale). What a benchmark measures this way is
the most that any design of those views could give, since the architecture folds every report
into them inside its write (inline projection).

    .venv/bin/python tests/bench/bench_commands.py --without-usage-views
    .venv/bin/python tests/bench/bench_http.py --without-usage-views   # set_usage only
    .venv/bin/python -m tests.bench.without_usage_views --db PATH serve   # the CLI, patched
"""

from projections import usages, user_usages


def leave_out_usage_views() -> None:
    """From now on in this process, UsageReported events change no view."""
    for view in (usages, user_usages):
        view.HANDLERS.pop("UsageReported", None)


if __name__ == "__main__":
    from ledger.cli import cli

    leave_out_usage_views()
    cli()
