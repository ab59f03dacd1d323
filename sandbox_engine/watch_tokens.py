"""Watch links' tokens, valid on every worker and replica: each session has a secret its record
store keeps beside its record (a file `<id>.watch` in the state directory, 0600 like every file
there, or a key in Redis), and a token is a nonce with its HMAC under that secret. Revoking
removes the secret, so every token of the session fails at once, everywhere; the next link made
gets a new secret. Records' pruning removes the secret with the rest.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Protocol


class Secrets(Protocol):
    """What of the record store (store.Store) the tokens need."""

    def watch_secret(self, session_id: str, make: bool = False) -> bytes | None: ...

    def revoke_watch(self, session_id: str) -> None: ...


def _mac(secret: bytes, session_id: str, nonce: str) -> str:
    return hmac.new(secret, f"{session_id}.{nonce}".encode(), hashlib.sha256).hexdigest()[:32]


def mint(store: Secrets, session_id: str) -> str:
    """A new token for the session's watch link (its secret made if it has none yet)."""
    secret = store.watch_secret(session_id, make=True) or b""
    nonce = secrets.token_urlsafe(12)
    return f"{nonce}.{_mac(secret, session_id, nonce)}"


def valid(store: Secrets, session_id: str, token: str) -> bool:
    nonce, _, mac = token.partition(".")
    secret = store.watch_secret(session_id)
    if secret is None or not nonce or not mac:
        return False
    return hmac.compare_digest(mac, _mac(secret, session_id, nonce))


def revoke(store: Secrets, session_id: str) -> None:
    store.revoke_watch(session_id)
