"""The log's hash chain: each event's hash covers its predecessor's hash and every other column of its own."""

import contextlib
import hashlib
from json.encoder import encode_basestring

from ledger.errors import ChainBroken
from ledger.log.records import COLUMNS, StoredEvent, canonical, stored_event

GENESIS_HASH = "0" * 64


def chain_hash(prev_hash: str, row: dict) -> str:
    """SHA-256 of the previous hash and every other column of the event."""
    content = {name: row[name] for name in COLUMNS if name not in ("prev_hash", "hash")}
    return hashlib.sha256((prev_hash + canonical(content)).encode()).hexdigest()


def check_link(event: StoredEvent, expected_seq: int, prev_hash: str) -> None:
    if event.seq != expected_seq:
        raise ChainBroken(event.seq, f"expected seq {expected_seq}")
    if event.prev_hash != prev_hash:
        raise ChainBroken(event.seq, "prev_hash does not match the previous event's hash")
    if chain_hash(prev_hash, vars(event)) != event.hash:
        raise ChainBroken(event.seq, "content does not match its hash")


def check_row(row: tuple, expected_seq: int, prev_hash: str) -> None:
    """check_link for a row as stored (see `EventStore.read_rows`), parsing its data only when the fast check fails."""
    try:
        if row[0] == expected_seq and row[-2] == prev_hash and _stored_row_hash(prev_hash, row) == row[-1]:
            return
    except TypeError:  # a column holding an unexpected type: the definition judges it
        pass
    try:
        event = stored_event(row)
    except ValueError:
        raise ChainBroken(row[0], "data is not JSON") from None
    check_link(event, expected_seq, prev_hash)


def row_hash(prev_hash: str, row: tuple, data: dict) -> str:
    """chain_hash of a row about to be stored (see `EventStore.read_rows`; `data` is its data parsed)."""
    seq, version, schema_version, actor_id = row[0], row[3], row[5], row[8]
    if type(seq) is type(version) is type(schema_version) is int and (actor_id is None or type(actor_id) is int):
        with contextlib.suppress(TypeError):
            return _stored_row_hash(prev_hash, row)
    # A column of another type (a bool is not written as an int in JSON): the definition decides.
    return chain_hash(prev_hash, {**dict(zip(COLUMNS, row)), "data": data})


def _stored_row_hash(prev_hash: str, row: tuple) -> str:
    """chain_hash of a stored row, with its data text spliced in unparsed: several times faster.

    The store writes data only as canonical(data), so for an intact row this is exactly the
    defined content; a row it does not match is judged by chain_hash itself.
    """
    before, between, after = hashed_text_around(row)
    text = f"{before}{encode_basestring(row[7])}{between}{row[0]}{after}"
    return hashlib.sha256((prev_hash + text).encode()).hexdigest()


def hashed_text_around(row: tuple) -> tuple[str, str, str]:
    """The text that chain_hash hashes after the previous hash, for a row as stored, but for its
    recorded_at and seq: the text is `before`, recorded_at as a JSON string, `between`, seq, `after`.
    For a store that numbers and times a row where it inserts it (PostgreSQL's ledger_append).
    Raises TypeError for a column not of its type (see `row_hash`)."""
    event_id, stream, version, type_, schema_version, occurred_at, _, actor_id, data = row[1:10]
    string = encode_basestring  # canonical() of a str; raises TypeError for anything else
    return (
        f'{{"actor_id":{"null" if actor_id is None else actor_id},"data":{data},"event_id":{string(event_id)},'
        f'"occurred_at":{string(occurred_at)},"recorded_at":',
        f',"schema_version":{schema_version},"seq":',
        f',"stream":{string(stream)},"type":{string(type_)},"version":{version}}}',
    )
