"""The log's records: events decided and not yet stored, events as stored, and their canonical text."""

import dataclasses
import functools
import json
from collections.abc import Iterable
from json.encoder import encode_basestring


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclasses.dataclass(frozen=True)
class NewEvent:
    """An event a command has decided on, not yet in the log."""

    stream: str
    version: int
    type: str
    data: dict
    occurred_at: str
    actor_id: int | None = None
    schema_version: int = 1

    @functools.cached_property
    def data_text(self) -> str:
        """The data as stored: its canonical JSON. Encoded once, and by `events.new` when the
        event is decided, so that appending, inside the writer lock, only hashes and inserts it."""
        return canonical(self.data)


class Decision(list):
    """Events decided together, and `read`: the versions of streams the decision depends on without
    appending to them. Appending fails with StreamConflict when one of those has moved since."""

    def __init__(self, decided: Iterable[NewEvent] = (), read: dict[str, int] | None = None):
        super().__init__(decided)
        self.read = dict(read or {})


@dataclasses.dataclass(frozen=True)
class StoredEvent:
    seq: int
    event_id: str
    stream: str
    version: int
    type: str
    schema_version: int
    occurred_at: str
    recorded_at: str
    actor_id: int | None
    data: dict
    prev_hash: str
    hash: str

    def row(self) -> dict:
        """Every column, as stored: data as its canonical JSON text."""
        # vars, not dataclasses.asdict: asdict deep-copies `data`, which is then replaced anyway.
        return {**vars(self), "data": canonical(self.data)}


COLUMNS = [f.name for f in dataclasses.fields(StoredEvent)]


def stored_event(row) -> StoredEvent:
    """The event of a stored row (values in COLUMNS order, data as stored text)."""
    values = dict(zip(COLUMNS, row))
    values["data"] = json.loads(values["data"])
    return StoredEvent(**values)


def canonical_row(row: tuple) -> str:
    """An event as export writes it, from its stored row (see `EventStore.read_rows`): canonical JSON of
    every column, `data` as the object it holds, i.e. canonical(StoredEvent.row() | {"data": data}).

    Written out by hand because the JSON encoder would be most of an export's time: the data text,
    which the store writes only as canonical(data), is spliced in as it is. A column holding an
    unexpected type leaves it to the encoder.
    """
    seq, event_id, stream, version, type_, schema_version, occurred_at, recorded_at, actor_id, data, prev_hash, hash_ = row
    string, integer = encode_basestring, int.__repr__  # each raises TypeError for any other type
    try:
        if type(data) is not str:
            raise TypeError("data is not text")
        return (
            f'{{"actor_id":{"null" if actor_id is None else integer(actor_id)},"data":{data},'
            f'"event_id":{string(event_id)},"hash":{string(hash_)},"occurred_at":{string(occurred_at)},'
            f'"prev_hash":{string(prev_hash)},"recorded_at":{string(recorded_at)},'
            f'"schema_version":{integer(schema_version)},"seq":{integer(seq)},"stream":{string(stream)},'
            f'"type":{string(type_)},"version":{integer(version)}}}'
        )
    except TypeError:
        return canonical(dict(zip(COLUMNS, row)) | {"data": _exported_data(data)})


def _exported_data(data):
    """Stored data as export writes it: the object it holds; text that holds none, as that text."""
    try:
        return json.loads(data)
    except (TypeError, ValueError):
        return data
