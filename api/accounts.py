"""Who is calling and what is serving: `version` and `users/me`, as Waldur answers them."""

from importlib.metadata import version

from flask import Blueprint, g, jsonify

from ledger.access import user_uuid

from .auth import authenticate

blueprint = Blueprint("accounts", __name__, url_prefix="/api")


@blueprint.route("/version/", methods=["GET"])
def server_version():
    authenticate(g.ledger.conn)
    return jsonify(version=version("usage-ledger"))


@blueprint.route("/users/me/", methods=["GET"])
def me():
    caller = authenticate(g.ledger.conn)
    return jsonify(
        uuid=user_uuid(caller.id), username=caller.username, full_name="", is_staff=caller.is_staff,
        is_support=caller.is_support,
    )
