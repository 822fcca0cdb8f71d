"""Response shapes, each declared once: its keys in wire order, how the OpenAPI document describes each
key, and how the object shown gives its value. The serialisers and the document's components are both
made from them, so that what the API sends and what it documents cannot drift apart."""

from collections.abc import Callable
from dataclasses import dataclass

from . import links

TEXT, NULLABLE_TEXT = {"type": "string"}, {"type": "string", "nullable": True}
UUID_TEXT, LINK = {"type": "string", "format": "uuid"}, {"type": "string", "format": "uri"}
MOMENT, DATE = {"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}
BOOLEAN, INTEGER, OBJECT = {"type": "boolean"}, {"type": "integer"}, {"type": "object"}
# The ledger's amounts as shown: exact, two decimals.
AMOUNT = {"type": "string", "format": "decimal", "pattern": r"^-?\d{0,18}\.\d{2}$"}


@dataclass(frozen=True)
class Field:
    """One key of a response and its OpenAPI schema. Its value is `value(obj)` when given, else the
    object's value of the same key, through `convert` when given."""

    schema: dict
    convert: Callable | None = None
    value: Callable | None = None


class Shape:
    """A response object: `wire(obj)` shows an object (a row) in it, `schema` documents it."""

    def __init__(self, fields: dict[str, Field], description: str | None = None, more: dict | bool = False):
        """`more`: the schema of keys besides `fields` (False: there are none)."""
        self.fields = fields
        self.schema = {
            "type": "object", **({"description": description} if description else {}),
            "properties": {name: field.schema for name, field in fields.items()}, "additionalProperties": more,
        }
        self.wire = compiled(fields)

    def extended(self, fields: dict[str, Field]) -> "Shape":
        """This shape with more keys after its own."""
        return Shape({**self.fields, **fields})


def linked(kind: str, key: str = "uuid") -> Field:
    """The link to the object of a `kind` whose UUID is the row's `key`."""
    return Field(LINK, value=lambda row: links.to(kind, row[key]))


def many(shape: Shape) -> dict:
    """The schema of a list of `shape`s."""
    return {"type": "array", "items": shape.schema}


def compiled(fields: dict[str, Field]) -> Callable[[dict], dict]:
    """The serialiser of a shape as one dict display: a loop over the fields costs twice as much per row."""
    scope, items = {}, []
    for n, (name, field) in enumerate(fields.items()):
        if field.value is not None:
            scope[f"value{n}"] = field.value
            items.append(f"{name!r}: value{n}(row)")
        elif field.convert is not None:
            scope[f"convert{n}"] = field.convert
            items.append(f"{name!r}: convert{n}(row[{name!r}])")
        else:
            items.append(f"{name!r}: row[{name!r}]")
    exec(f"def wire(row):\n    return {{{', '.join(items)}}}\n", scope)  # only declared names, never input
    return scope["wire"]
