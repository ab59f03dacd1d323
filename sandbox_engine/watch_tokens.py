"""Watch links' tokens, valid on every worker: each session's secret is a file beside its record
(`<id>.watch`, 0600 like every file there), and a token is a nonce with its HMAC under that
secret. Revoking removes the secret, so every token of the session fails at once, on every
worker; the next link made gets a new secret. Records' pruning removes the file with the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets

from .statedir import private_opener

SUFFIX = ".watch"


def _path(directory: str, session_id: str) -> str:
    return os.path.join(directory, session_id + SUFFIX)


def _secret(directory: str, session_id: str) -> bytes | None:
    try:
        with open(_path(directory, session_id), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _mac(secret: bytes, session_id: str, nonce: str) -> str:
    return hmac.new(secret, f"{session_id}.{nonce}".encode(), hashlib.sha256).hexdigest()[:32]


def mint(directory: str, session_id: str) -> str:
    """A new token for the session's watch link (its secret made if it has none yet)."""
    secret = _secret(directory, session_id)
    if secret is None:
        # Written aside then linked in: two workers minting at once agree on one secret.
        tmp = _path(directory, f".tmp-{secrets.token_hex(8)}")
        with open(tmp, "wb", opener=private_opener) as f:
            f.write(secrets.token_bytes(32))
        try:
            os.link(tmp, _path(directory, session_id))
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        secret = _secret(directory, session_id) or b""
    nonce = secrets.token_urlsafe(12)
    return f"{nonce}.{_mac(secret, session_id, nonce)}"


def valid(directory: str, session_id: str, token: str) -> bool:
    nonce, _, mac = token.partition(".")
    secret = _secret(directory, session_id)
    if secret is None or not nonce or not mac:
        return False
    return hmac.compare_digest(mac, _mac(secret, session_id, nonce))


def revoke(directory: str, session_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_path(directory, session_id))
