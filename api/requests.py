"""Request bodies: JSON as DRF parses it, with its error wording."""

import json

from flask import request

from .errors import bad_request


def json_body():
    """The request's JSON body (an empty body is an empty object); 400 in DRF's words when it is not JSON."""
    data = request.get_data(cache=True)
    if not data.strip():
        return {}
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:
        raise bad_request({"detail": f"JSON parse error - {error}"}) from None
