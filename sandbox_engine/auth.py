"""Who may call which route: API keys, their scopes and their request rates, checked before any
blueprint sees the request. Refusals are EngineErrors, answered in each API's own shape by its
blueprint's error handler (or app.py's, for a path no route matched).

Every route is named in ROUTES; one that is not needs the admin scope, so a new route stays closed
until someone decides who may use it (a unit test keeps the table complete).
"""

from __future__ import annotations

import enum
import logging

from flask import Flask, current_app, g, request

from .errors import EngineError, Kind
from .keys import Key, KeyStore, Scope
from .rates import Rates

log = logging.getLogger(__name__)

EXTENSION = "sandbox_engine.auth"


class Access(enum.Enum):
    OPEN = "open"  # never a key: health, readiness, the IDE's page and files, the API's description
    CAPABILITY = "capability"  # no key: the id in the URL is the capability (a session's WebSocket)
    ANY = "any"  # any valid key, whatever its scopes: the catalogs of languages


ROUTES: dict[str, Access | Scope] = {
    "api.healthz": Access.OPEN,
    "api.readyz": Access.OPEN,
    "ui.index": Access.OPEN,
    "ui.watch_page": Access.OPEN,
    "ui.bundle_file": Access.OPEN,
    "static": Access.OPEN,
    # The API's description is public, as most services' are: it tells what the server offers, not
    # what anyone ran, and a client needs it before it has a key.
    "docs.openapi": Access.OPEN,
    "docs.page": Access.OPEN,
    "ws.session_socket": Access.CAPABILITY,
    "ws.without_upgrade": Access.CAPABILITY,
    # The watch link's token is the capability: whoever has the link may follow the session.
    "watch.watch_socket": Access.CAPABILITY,
    "watch.without_upgrade": Access.CAPABILITY,
    "watch.create_watchers": Scope.SESSION,
    "watch.revoke_watchers": Scope.SESSION,
    "api.create_session": Scope.SESSION,
    "api.get_session": Scope.SESSION,
    "api.delete_session": Scope.SESSION,
    "api.languages": Access.ANY,
    "api.pool": Scope.ADMIN,
    "metrics.metrics": Scope.ADMIN,
    "runs.create_run": Scope.RUN,
    "runs.get_run": Scope.RUN,
    "piston.list_runtimes": Access.ANY,
    "piston.execute": Scope.RUN,
    "piston_ws.connect": Scope.SESSION,
    "piston_ws.without_upgrade": Scope.SESSION,
    "judge0.create_submission": Scope.RUN,
    "judge0.get_submission": Scope.RUN,
    "judge0.delete_submission": Scope.RUN,
    "judge0.create_batch": Scope.RUN,
    "judge0.get_batch": Scope.RUN,
    "judge0.languages": Access.ANY,
    "judge0.all_languages": Access.ANY,
    "judge0.language": Access.ANY,
    "judge0.statuses": Access.ANY,
    "judge0.about": Access.ANY,
    "judge0.version": Access.ANY,
    "judge0.config_info": Access.ANY,
}
# Where a key may come from besides `Authorization: Bearer <key>`, by path: Judge0's clients send
# X-Auth-Token (Judge0's AUTHN_HEADER); Piston's send their api_key as the bare Authorization
# header (as emkc.org's public Piston took it), which our keys' prefix tells apart.
JUDGE0_PREFIX = "/judge0/"
PISTON_PREFIX = "/api/v2/"


class Auth:
    """One app's keys and rates, and whether a key is needed before the first one exists."""

    def __init__(self, keys: KeyStore, rates: Rates, required: bool = False) -> None:
        self.keys = keys
        self.rates = rates
        self.always = required

    def required(self) -> bool:
        return self.always or self.keys.required()

    def check(self) -> None:
        """Refuse the request unless its key may use its route; remember the key for the route."""
        access = ROUTES.get(request.endpoint, Scope.ADMIN) if request.endpoint else Access.ANY
        if access in (Access.OPEN, Access.CAPABILITY) or not self.required():
            return
        secret = presented()
        key = self.keys.find(secret) if secret else None
        if key is None:
            raise _unauthorized(given=secret is not None)
        if isinstance(access, Scope) and access not in key.scopes:
            raise EngineError(
                Kind.FORBIDDEN,
                f"key {key.name!r} may not use this route: it needs the {access} scope "
                f"(the key has {', '.join(sorted(key.scopes))})",
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{access}"'},
            )
        if key.rate is not None:
            wait = self.rates.take(key.name, key.rate)
            if wait is not None:
                raise EngineError(
                    Kind.RATE_LIMITED,
                    f"key {key.name!r} is over its rate of {key.rate} requests a minute; "
                    f"try again in {wait} s",
                    retry_after=wait,
                )
        g.sandbox_key = key
        self.keys.used(key)


def install(app: Flask, auth: Auth) -> None:
    app.extensions[EXTENSION] = auth
    app.before_request(auth.check)


def current_key() -> Key | None:
    """The API key of the request being handled; None on a server without keys."""
    return g.get("sandbox_key")


def current_auth() -> Auth:
    return current_app.extensions[EXTENSION]


def presented() -> str | None:
    """The key the request carries, if any: `Authorization: Bearer <key>`, and on Judge0's and
    Piston's paths the headers their own clients send (see JUDGE0_PREFIX). Anything else in
    Authorization is a key that is not valid (an empty string)."""
    header = request.headers.get("Authorization", "").strip()
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    if header and request.path.startswith(PISTON_PREFIX) and not credentials:
        return header
    token = request.headers.get("X-Auth-Token", "").strip()
    if not header and token and request.path.startswith(JUDGE0_PREFIX):
        return token
    return "" if header else None


def _unauthorized(given: bool) -> EngineError:
    if given:
        return EngineError(
            Kind.UNAUTHORIZED,
            "this API key is not valid: unknown, revoked or mistyped",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    how = "Authorization: Bearer <key>"
    if request.path.startswith(JUDGE0_PREFIX):
        how += " or X-Auth-Token: <key>"
    return EngineError(
        Kind.UNAUTHORIZED, f"this server needs an API key: send {how}", headers={"WWW-Authenticate": "Bearer"}
    )
