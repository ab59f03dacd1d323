"""sandbox-engine: untrusted programs in hardened containers, streamed live over WebSockets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(*args: Any, **kwargs: Any) -> Flask:
    """The application factory (see app.create_app). Importing the package stays light, so that
    gunicorn's master can read our settings without loading Flask or ssl before it forks."""
    from .app import create_app as factory

    return factory(*args, **kwargs)
