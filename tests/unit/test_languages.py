"""The language specs as scripts/build-images.sh reads them: which images, which version commands."""

from __future__ import annotations

import os

import pytest

from sandbox_engine.executor import SANDBOX_USER
from sandbox_engine.languages import LANGUAGES, image_folder, main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert main(list(argv)) == 0
    return capsys.readouterr().out.splitlines()


def test_images_are_the_folders_the_languages_name_each_once(capsys):
    images = run(capsys, "images")
    assert images == list(dict.fromkeys(image_folder(spec) for spec in LANGUAGES.values()))
    assert images[:3] == ["python", "node", "gcc"] and len(images) == 13
    for name in images:
        assert os.path.isfile(os.path.join(ROOT, "images", name, "Dockerfile")), name


def test_every_language_image_builds_on_the_runtime_layer_and_ends_as_the_sandbox_user(capsys):
    images = run(capsys, "images")
    # The runtime layer is what they build on, not a language's image.
    assert "runtime" not in images
    for name in images:
        with open(os.path.join(ROOT, "images", name, "Dockerfile"), encoding="utf-8") as f:
            lines = f.read().splitlines()
        assert [line for line in lines if line.startswith("FROM ")] == [
            "FROM sandbox-engine/runtime:bookworm"
        ]
        assert [line for line in lines if line.startswith("USER ")][-1] == f"USER {SANDBOX_USER}", name


def test_version_commands_of_an_image_are_its_languages_lines(capsys):
    assert run(capsys, "version-commands", "node") == [
        "javascript=node -p process.versions.node",
        "typescript=tsc --version | cut -d' ' -f2",
    ]
    # The folder's path works as well as its name.
    assert run(capsys, "version-commands", "images/gcc/") == [
        "c=gcc -dumpfullversion",
        "cpp=g++ -dumpfullversion",
    ]
    assert run(capsys, "version-commands", "nothing") == []


def test_every_language_has_a_one_line_version_command():
    # The build reads `<language>=<command>` lines: a command must be there, on one line.
    for spec in LANGUAGES.values():
        assert spec.version_command.strip() and "\n" not in spec.version_command, spec.id
