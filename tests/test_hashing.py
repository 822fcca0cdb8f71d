"""The hash chain's rule, as the kernel computes it for rows about to be stored."""

from ledger.log.hashing import GENESIS_HASH, chain_hash, row_hash
from ledger.log.records import COLUMNS

from .contracts.store import expected_hash


def test_row_hash_of_a_column_json_writes_otherwise_follows_the_definition():
    row = (1, "id", "stream", 1, "Noted", 1, "2026-03-15T12:00:00Z", "2026-03-15T12:00:00Z", True, '{"n":1}', GENESIS_HASH)
    content = dict(zip(COLUMNS, row)) | {"data": {"n": 1}}
    assert row_hash(GENESIS_HASH, row, {"n": 1}) == chain_hash(GENESIS_HASH, content) == expected_hash(content)
