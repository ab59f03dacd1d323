"""Languages as data: what image runs a language, where its source goes, how it compiles and runs,
and what its users see of it (file extensions, editor mode, example program).

Adding a language is adding a spec here and an image under images/ (README.md, "Adding a
language", step by step); nothing else changes: GET /languages gives the IDE and the CLI what they
need, scripts/build-images.sh builds the images named here, and the tests list the languages from
here.
The version here is the one expected; GET /languages reports the one the image's build recorded.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field

from .examples import example as _example

# The JVM with few threads (pids are limited) and a quick start over peak speed.
_JVM = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData")
# C stdio block-buffers a pipe: unbuffered, so a prompt reaches the client before input waits.
_UNBUFFERED = ("stdbuf", "-o0", "-e0")
# A paused stdin lets a Node program exit, as on a terminal (images/node/stdin.js).
_NODE = {"NODE_OPTIONS": "--require /opt/sandbox/stdin.js"}


@dataclass(frozen=True)
class LanguageSpec:
    id: str
    name: str
    version: str
    image: str
    source_file: str
    run: tuple[str, ...]
    # The file extensions `sandbox-engine run` takes for this language, lower case, with the dot.
    extensions: tuple[str, ...]
    # The IDE's editor mode: one of the CodeMirror modes static/src/languages.js knows how to load.
    editor_mode: str
    # The program the IDE starts from: it prompts without a newline and greets, the interactive
    # case every language must handle (a file of sandbox_engine/examples/).
    example: str
    # A shell command that prints the version installed in the image, run there by
    # scripts/build-images.sh, which records it in the image's `sandbox-engine.version.<id>` label.
    version_command: str
    compile: tuple[str, ...] | None = None
    env: dict[str, str] = field(default_factory=dict)
    # The launcher inside the sandbox: "sh" for any language; "python", "node", "ruby" or "php"
    # (the interpreter starts before the program arrives and waits for it, see
    # sandbox_engine.launchers; `run` is
    # then what TESTS mode runs); or "typescript" (node's, with a warm compiler beside it that
    # the compile stage asks; see launch_typescript.compile_stage).
    launcher: str = "sh"

    def public(self, version: str | None = None) -> dict:
        """What GET /languages says of this language."""
        return {
            "id": self.id,
            "name": self.name,
            "version": version or self.version,
            "extensions": list(self.extensions),
            "editorMode": self.editor_mode,
            "example": self.example,
            # The file the program is written to: what a download of it should be called.
            "sourceFile": self.source_file,
        }


def _image(name: str) -> str:
    return f"sandbox-engine/{name}:latest"


LANGUAGES: dict[str, LanguageSpec] = {
    spec.id: spec
    for spec in (
        LanguageSpec(
            id="python",
            name="Python",
            version="3.11",
            image=_image("python"),
            source_file="main.py",
            extensions=(".py",),
            editor_mode="python",
            example=_example("python.py"),
            version_command="python3 -c 'import platform; print(platform.python_version())'",
            # -u as well as PYTHONUNBUFFERED in the image: a prompt must never wait in a buffer.
            run=("python3", "-u", "main.py"),
            env={"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"},
            launcher="python",
        ),
        LanguageSpec(
            id="javascript",
            name="JavaScript (Node.js)",
            version="18",
            image=_image("node"),
            source_file="main.js",
            extensions=(".js", ".mjs"),
            editor_mode="javascript",
            example=_example("javascript.js"),
            version_command="node -p process.versions.node",
            run=("node", "main.js"),
            env=_NODE,
            # Node, started before the program arrives, waits for it (launchers/node_warm.js).
            launcher="node",
        ),
        LanguageSpec(
            id="typescript",
            name="TypeScript",
            version="4.8",
            image=_image("node"),
            source_file="main.ts",
            extensions=(".ts",),
            editor_mode="typescript",
            example=_example("typescript.ts"),
            version_command="tsc --version | cut -d' ' -f2",
            compile=(
                "tsc",
                "--strict",
                "--target",
                "es2022",
                "--lib",
                "es2022",
                "--module",
                "commonjs",
                "--typeRoots",
                "/usr/share/nodejs/@types",
                "--types",
                "node",
                "--skipLibCheck",
                "main.ts",
            ),
            run=("node", "main.js"),
            env=_NODE,
            # A warm compiler, its libraries parsed, waits for the code (launchers/tsc_server.js),
            # and Node for the compiled program, as JavaScript's.
            launcher="typescript",
        ),
        LanguageSpec(
            id="c",
            name="C",
            version="12",
            image=_image("gcc"),
            source_file="main.c",
            extensions=(".c",),
            editor_mode="c",
            example=_example("c.c"),
            version_command="gcc -dumpfullversion",
            compile=("gcc", "-std=gnu17", "-O2", "-Wall", "-o", "main", "main.c", "-lm"),
            run=(*_UNBUFFERED, "./main"),
        ),
        LanguageSpec(
            id="cpp",
            name="C++",
            version="12",
            image=_image("gcc"),
            source_file="main.cpp",
            extensions=(".cpp", ".cc", ".cxx"),
            editor_mode="cpp",
            example=_example("cpp.cpp"),
            version_command="g++ -dumpfullversion",
            compile=("g++", "-std=gnu++20", "-O2", "-Wall", "-o", "main", "main.cpp"),
            run=(*_UNBUFFERED, "./main"),
        ),
        LanguageSpec(
            id="go",
            name="Go",
            version="1.19",
            image=_image("go"),
            source_file="main.go",
            extensions=(".go",),
            editor_mode="go",
            example=_example("go.go"),
            version_command="go version | cut -d' ' -f3 | cut -c3-",
            compile=("go", "build", "-o", "main", "main.go"),
            run=("./main",),
            env={"GOCACHE": "/tmp/go-cache", "GOPATH": "/tmp/go", "CGO_ENABLED": "0"},
        ),
        LanguageSpec(
            id="rust",
            name="Rust",
            version="1.63",
            image=_image("rust"),
            source_file="main.rs",
            extensions=(".rs",),
            editor_mode="rust",
            example=_example("rust.rs"),
            version_command="rustc --version | cut -d' ' -f2",
            compile=("rustc", "--edition", "2021", "-O", "-C", "strip=debuginfo", "-o", "main", "main.rs"),
            run=("./main",),
        ),
        LanguageSpec(
            id="java",
            name="Java",
            version="17",
            image=_image("java"),
            source_file="Main.java",
            extensions=(".java",),
            editor_mode="java",
            example=_example("java.java"),
            version_command="javac -version 2>&1 | cut -d' ' -f2",
            compile=("javac", *(f"-J{flag}" for flag in _JVM), "-encoding", "UTF-8", "-d", ".", "Main.java"),
            run=("java", *_JVM, "-XX:CICompilerCount=1", "-XX:ActiveProcessorCount=1", "-cp", ".", "Main"),
        ),
        LanguageSpec(
            id="ruby",
            name="Ruby",
            version="3.1",
            image=_image("ruby"),
            source_file="main.rb",
            extensions=(".rb",),
            editor_mode="ruby",
            example=_example("ruby.rb"),
            version_command="ruby -e 'print RUBY_VERSION'",
            run=("ruby", "main.rb"),
            env={"RUBYOPT": "-r/opt/sandbox/sync.rb"},
            # Ruby, started before the program arrives, waits for it (launchers/ruby_warm.rb).
            launcher="ruby",
        ),
        LanguageSpec(
            id="php",
            name="PHP",
            version="8.2",
            image=_image("php"),
            source_file="main.php",
            extensions=(".php",),
            editor_mode="php",
            example=_example("php.php"),
            version_command="php -r 'echo PHP_VERSION;'",
            run=("php", "main.php"),
            env={"PHP_INI_SCAN_DIR": ":/opt/sandbox/php"},
            # `php main.php`, started before the program arrives, waits for its script (a FIFO).
            launcher="php",
        ),
        LanguageSpec(
            id="perl",
            name="Perl",
            version="5.36",
            image=_image("perl"),
            source_file="main.pl",
            extensions=(".pl",),
            editor_mode="perl",
            example=_example("perl.pl"),
            version_command="perl -V:version | tr -dc 0-9.",
            run=("perl", "main.pl"),
            env={"PERL5LIB": "/opt/sandbox/perl", "PERL5OPT": "-MSandboxAutoflush"},
        ),
        LanguageSpec(
            id="lua",
            name="Lua",
            version="5.4",
            image=_image("lua"),
            source_file="main.lua",
            extensions=(".lua",),
            editor_mode="lua",
            example=_example("lua.lua"),
            version_command="lua5.4 -v | cut -d' ' -f2",
            run=(*_UNBUFFERED, "lua5.4", "main.lua"),
        ),
        LanguageSpec(
            id="bash",
            name="Bash",
            version="5.2",
            image=_image("bash"),
            source_file="main.sh",
            extensions=(".sh", ".bash"),
            editor_mode="shell",
            example=_example("bash.sh"),
            version_command="bash --version | head -n1 | cut -d' ' -f4 | cut -d'(' -f1",
            run=("bash", "main.sh"),
        ),
        LanguageSpec(
            id="csharp",
            name="C# (Mono)",
            version="6.8",
            image=_image("mono"),
            source_file="main.cs",
            extensions=(".cs",),
            editor_mode="csharp",
            example=_example("csharp.cs"),
            version_command="mono --version | head -n1 | cut -d' ' -f5",
            compile=("mcs", "-out:main.exe", "main.cs"),
            run=("mono", "main.exe"),
        ),
        LanguageSpec(
            id="haskell",
            name="Haskell",
            version="9.0",
            image=_image("haskell"),
            source_file="main.hs",
            extensions=(".hs",),
            editor_mode="haskell",
            example=_example("haskell.hs"),
            version_command="ghc --numeric-version",
            # SandboxMain wraps the user's Main: stdout is flushed before stdin reads, as in C.
            compile=(
                "ghc",
                "-O",
                "-v0",
                "-outputdir",
                "/tmp/ghc",
                "-main-is",
                "SandboxMain",
                "-o",
                "main",
                "main.hs",
                "/opt/sandbox/SandboxMain.hs",
            ),
            run=("./main",),
        ),
    )
}

VERSION_LABEL = "sandbox-engine.version."


def image_folder(spec: LanguageSpec) -> str:
    """The folder under images/ a language's image is built from: sandbox-engine/<folder>:latest."""
    return spec.image.removeprefix("sandbox-engine/").removesuffix(":latest")


def main(argv: list[str] | None = None) -> int:
    """What the scripts ask: which images to build, the version commands of each (build-images.sh),
    a pool of every language (bench.sh)."""
    parser = argparse.ArgumentParser(prog="python -m sandbox_engine.languages", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("images", help="the folders under images/ the languages' images are built from")
    versions = commands.add_parser(
        "version-commands", help="`<language>=<command>` lines: the version command of each language of IMAGE"
    )
    versions.add_argument("image", metavar="IMAGE", help="a folder under images/ (node, or images/node)")
    sizes = commands.add_parser("pool-sizes", help="a --pool-size of SIZE warm sandboxes of every language")
    sizes.add_argument("size", type=int, metavar="SIZE")
    args = parser.parse_args(argv)
    if args.command == "pool-sizes":
        print(",".join(f"{language}={args.size}" for language in LANGUAGES))
    elif args.command == "images":
        print("\n".join(dict.fromkeys(image_folder(spec) for spec in LANGUAGES.values())))
    else:
        folder = os.path.basename(os.path.normpath(args.image))
        for spec in LANGUAGES.values():
            if image_folder(spec) == folder:
                print(f"{spec.id}={spec.version_command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
