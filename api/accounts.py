"""Who is calling and what is serving: `version` and `users/me`, as Waldur answers them."""

import functools
from importlib.metadata import version

from flask import Blueprint, g, jsonify

from ledger.rules.access import user_uuid

from .auth import authenticate
from .shapes import BOOLEAN, TEXT, UUID_TEXT, Field, Shape

VERSION = Shape({"version": Field(TEXT)})
# The caller, a ledger.rules.access.Caller.
USER_ME = Shape({
    "uuid": Field(UUID_TEXT, value=lambda caller: user_uuid(caller.id)),
    "username": Field(TEXT, value=lambda caller: caller.username), "full_name": Field(TEXT, value=lambda caller: ""),
    "is_staff": Field(BOOLEAN, value=lambda caller: caller.is_staff),
    "is_support": Field(BOOLEAN, value=lambda caller: caller.is_support),
})

blueprint = Blueprint("accounts", __name__, url_prefix="/api")


@functools.cache
def installed_version() -> str:
    """The package's version, read from its installed metadata once: a file parsed on every request otherwise."""
    return version("usage-ledger")


@blueprint.route("/version/", methods=["GET"])
def server_version():
    authenticate(g.ledger.conn)
    return jsonify(VERSION.wire({"version": installed_version()}))


@blueprint.route("/users/me/", methods=["GET"])
def me():
    caller = authenticate(g.ledger.conn)
    return jsonify(USER_ME.wire(caller))
