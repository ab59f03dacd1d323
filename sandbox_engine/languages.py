"""Languages as data: what image runs a language, where its source goes and how it runs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LanguageSpec:
    id: str
    name: str
    version: str
    image: str
    source_file: str
    run: tuple[str, ...]
    compile: tuple[str, ...] | None = None
    env: dict[str, str] = field(default_factory=dict)
    # The launcher inside the sandbox: "sh" for any language, or one of sandbox_engine.launchers
    # that starts the interpreter before the program arrives (it then replaces `run`).
    launcher: str = "sh"

    def public(self) -> dict:
        return {"id": self.id, "name": self.name, "version": self.version}


LANGUAGES: dict[str, LanguageSpec] = {
    spec.id: spec
    for spec in (
        LanguageSpec(
            id="python",
            name="Python",
            version="3.11",
            image="sandbox-engine/python:latest",
            source_file="main.py",
            # -u as well as PYTHONUNBUFFERED in the image: a prompt must never wait in a buffer.
            run=("python3", "-u", "main.py"),
            env={"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"},
            launcher="python",
        ),
    )
}
