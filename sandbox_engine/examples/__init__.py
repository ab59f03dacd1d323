"""The program the IDE starts from in each language, one file per language, served by GET /languages.

Each prompts without a newline, reads a line and greets: the interactive case every language must
handle. They are shown to users as written: ruff leaves python.py alone.
"""

from __future__ import annotations

from importlib import resources


def example(name: str) -> str:
    """The text of one example file, e.g. `python.py`."""
    return (resources.files(__package__) / name).read_text(encoding="utf-8")
