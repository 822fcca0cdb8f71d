"""Every error is a JSON body in Django REST framework's shape, never an HTML page."""

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from ledger.commands import idempotency
from ledger.errors import DatabaseUnavailable
from projections.projector import ViewsBehind

# How long a client is asked to wait when the views are behind the log (a 503).
RETRY_AFTER_SECONDS = 1


class ApiError(Exception):
    """An error answered as `status` with `body` as JSON (and optional extra headers)."""

    def __init__(self, status: int, body: dict | list, headers: dict | None = None):
        super().__init__(body)
        self.status, self.body, self.headers = status, body, headers or {}


def bad_request(body: dict) -> ApiError:
    return ApiError(400, body)


def not_found() -> ApiError:
    return ApiError(404, {"detail": "Not found."})


def forbidden() -> ApiError:
    return ApiError(403, {"detail": "You do not have permission to perform this action."})


def write_unsettled() -> ApiError:
    """A write whose database session was lost while it was on the way, and which is not made again
    by itself (api/requests.py, on_a_new_session): whether it landed is not known."""
    return ApiError(503, {"detail": "The database session was lost while this write was on its way:"
                                    " it may or may not have been recorded."}, {"Retry-After": str(RETRY_AFTER_SECONDS)})


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        return jsonify(error.body), error.status, error.headers

    @app.errorhandler(idempotency.Replayed)
    def replayed(error: idempotency.Replayed):
        # The write replayed may be committed but not yet flushed by its own process (committer.py).
        g.ledger.store.sync_log()
        return "", error.status

    @app.errorhandler(idempotency.KeyReused)
    def key_reused(error):
        return jsonify(detail="This Idempotency-Key was already used for a different request."), 422

    @app.errorhandler(ViewsBehind)
    def views_behind(error: ViewsBehind):
        # Never an answer from views that miss an acknowledged write: the client asks again.
        app.logger.warning("read refused: %s", error)
        return jsonify(detail="The ledger is catching up; try again shortly."), 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}

    @app.errorhandler(DatabaseUnavailable)
    def database_unavailable(error: DatabaseUnavailable):
        # The server is down (no new session within the pool's wait, api/requests.py), or the database
        # busy past its timeout: the client asks again.
        app.logger.error("database unavailable: %s", error)
        return jsonify(detail="The database is unavailable; try again shortly."), 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}

    @app.errorhandler(MethodNotAllowed)
    def method_not_allowed(error):
        return jsonify(detail=f'Method "{request.method}" not allowed.'), 405, {"Allow": ", ".join(error.valid_methods or [])}

    @app.errorhandler(NotFound)
    def not_found_route(error):
        return jsonify(detail="Not found."), 404

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error):
        return jsonify(detail="Request body is too large."), 413

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return jsonify(detail=error.description or error.name), error.code

    @app.errorhandler(Exception)
    def server_error(error):
        app.logger.exception("unhandled error")
        return jsonify(detail="A server error occurred."), 500
