"""Launchers that run inside a sandbox: they take the program from stdin and start it.

`sh` (in docker_executor) serves every language. A language may have its own launcher that
speaks the same protocol from inside its interpreter, so that a warm sandbox has the
interpreter started already: the program then starts without the interpreter's start-up.
"""

from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def source(name: str) -> str:
    """A launcher's code, passed to its interpreter on the command line (the images stay plain)."""
    with open(os.path.join(_HERE, f"{name}_launcher.py"), encoding="utf-8") as f:
        return f.read()
