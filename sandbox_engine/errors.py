"""Error kinds: the one place that decides an error's HTTP status and WebSocket close code."""

from __future__ import annotations

import enum

from .executor import ExecutorError, RuntimeUnavailable


class Kind(enum.Enum):
    # value: (code in the JSON body, HTTP status, WebSocket close code)
    INVALID_JSON = ("invalid_json", 400, 1007)
    INVALID_REQUEST = ("invalid_request", 400, 1008)
    UNKNOWN_LANGUAGE = ("unknown_language", 400, 1008)
    # No API key, or one the server does not know (unknown or revoked).
    UNAUTHORIZED = ("unauthorized", 401, 1008)
    # A browser page of another origin, or an API key without the route's scope.
    FORBIDDEN = ("forbidden", 403, 1008)
    # A watch link whose token is wrong or was revoked; also the close of watchers on revocation.
    INVALID_TOKEN = ("invalid_token", 403, 4403)
    NOT_FOUND = ("not_found", 404, 4404)
    METHOD_NOT_ALLOWED = ("method_not_allowed", 405, 1008)
    ALREADY_ATTACHED = ("already_attached", 409, 4409)
    # The controlling client's close when another resumed the session with takeover=1.
    TAKEN_OVER = ("taken_over", 409, 4408)
    # A watch of a session no client has attached to yet: there is nothing to follow.
    NOT_STARTED = ("not_started", 409, 4425)
    SESSION_ENDED = ("session_ended", 410, 4410)
    TOO_LARGE = ("too_large", 413, 1009)
    UNSUPPORTED_MEDIA_TYPE = ("unsupported_media_type", 415, 1003)
    UPGRADE_REQUIRED = ("upgrade_required", 426, 1002)
    AT_CAPACITY = ("at_capacity", 429, 1013)
    # An API key's own limits: its sessions and runs live at once, its requests a minute.
    QUOTA_EXCEEDED = ("quota_exceeded", 429, 1013)
    RATE_LIMITED = ("rate_limited", 429, 1013)
    # A session's --max-watchers watchers are attached already.
    TOO_MANY_WATCHERS = ("too_many_watchers", 429, 4429)
    # A client sending input faster than its program reads it, past the limit.
    INPUT_LIMIT = ("input_limit", 429, 1013)
    RUNTIME_UNAVAILABLE = ("runtime_unavailable", 503, 1011)
    INTERNAL = ("internal_error", 500, 1011)

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def http_status(self) -> int:
        return self.value[1]

    @property
    def close_code(self) -> int:
        return self.value[2]


class EngineError(Exception):
    """An error a client can be told about: what went wrong (kind) and a sentence for a person."""

    def __init__(
        self,
        kind: Kind,
        message: str,
        *,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after
        # The answer's headers, in every API's shape: Retry-After, WWW-Authenticate.
        self.headers = dict(headers or {})
        if retry_after:
            self.headers["Retry-After"] = str(retry_after)

    def to_json(self) -> dict:
        return {"error": {"code": self.kind.code, "message": self.message}}


_FOR_STATUS = {
    400: Kind.INVALID_REQUEST,
    401: Kind.UNAUTHORIZED,
    403: Kind.FORBIDDEN,
    404: Kind.NOT_FOUND,
    405: Kind.METHOD_NOT_ALLOWED,
    413: Kind.TOO_LARGE,
    415: Kind.UNSUPPORTED_MEDIA_TYPE,
}


def kind_for_status(status: int) -> Kind:
    """The kind for an HTTP error raised outside our code (routing, body size, bad methods)."""
    return _FOR_STATUS.get(status, Kind.INTERNAL if status >= 500 else Kind.INVALID_REQUEST)


def runtime_error(exc: ExecutorError) -> EngineError:
    """What a client is told of a runtime failure: unavailable (503), or an internal error."""
    kind = Kind.RUNTIME_UNAVAILABLE if isinstance(exc, RuntimeUnavailable) else Kind.INTERNAL
    error = EngineError(kind, str(exc))
    error.__cause__ = exc
    return error
