"""The languages whose launcher starts their toolchain before the code arrives, from a warm pool
through the real server: what a user sees is what test_languages sees cold (prompts before
input, the terminal, compile errors), and the session's sandbox was one of the pool's."""

from __future__ import annotations

import shlex
import time

import pytest
import requests
from harness import shutdown, start_server
from test_languages import COMPILE_ERRORS, GREETINGS

from sandbox_engine.languages import LANGUAGES

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# The languages with a launcher of their own (see languages.LanguageSpec.launcher).
WARM = [spec.id for spec in LANGUAGES.values() if spec.launcher != "sh"]
# The compiled languages of the sh launcher: a warm pool's sandbox has its compile stage started
# ahead, waiting for the code (see launch.compile_waiter); on a terminal it writes into the
# sandbox's.
AHEAD = [spec.id for spec in LANGUAGES.values() if spec.launcher == "sh" and spec.compile]


@pytest.fixture(scope="module")
def warm(docker_client, tmp_path_factory):
    sizes = ",".join(f"{language}=1,{language}/tty=1" for language in WARM + AHEAD)
    server = start_server(
        docker_client, tmp_path_factory, workers=2, idle_timeout=30, run_timeout=60, pool_size=sizes
    )
    yield server
    shutdown(server)


def offered(server, language: str, tty: bool) -> bool:
    """Whether the pool offers a sandbox of this language and mode: one started is offered only
    once its launcher is ready for a program."""
    levels = requests.get(f"{server.url}/pool", timeout=10).json()["pool"]
    return any(level["language"] == language and level["tty"] == tty and level["warm"] for level in levels)


def pooled(server, language: str, tty: bool) -> set[str]:
    """The ids of the pool's started sandboxes of this language and mode, once one is offered."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if not offered(server, language, tty):
            time.sleep(0.2)
            continue
        found = {
            c["Id"]
            for c in server.containers()
            if "-pool-" in c["Names"][0]
            and c["State"] == "running"
            and c["Labels"]["sandbox-engine.language"] == language
            and (c["Labels"]["sandbox-engine.tty"] == "1") == tty
        }
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"no warm {language} sandbox (tty {tty})")


def take(server, code: str, language: str, tty: bool) -> str:
    """A session of this program, in a sandbox that was warm before the code came."""
    warm_ids = pooled(server, language, tty)
    terminal = {"tty": True, "cols": 100, "rows": 30} if tty else {}
    response = server.post(code, language=language, **terminal)
    assert response.status_code == 201, response.text
    session_id = response.json()["sessionId"]
    # Taken in the state store, it keeps its pool's name until a client attaches: its record says.
    assert server.record(session_id)["sandbox"]["id"] in warm_ids
    return session_id


@pytest.mark.parametrize("language", WARM + AHEAD)
def test_a_warm_sandbox_shows_the_prompt_before_input(warm, language):
    session_id = take(warm, GREETINGS[language], language, tty=False)
    with warm.attach(session_id) as ws:
        assert ws.read_stdout_until("Enter your name: ", timeout=60) == "Enter your name: "
        ws.send({"type": "input", "data": "Ada\n"})
        transcript = ws.read_to_end(30)
    assert transcript.text() == "Enter your name: Hello, Ada!\n", transcript.text("stderr")
    assert transcript.ending["exitCode"] == 0 and transcript.ending["reason"] == "exited"
    states = [m["state"] for _, m in transcript.messages if m["type"] == "state"]
    assert states == [*(["COMPILING"] if LANGUAGES[language].compile else []), "RUNNING", "FINISHED"]


@pytest.mark.parametrize("language", WARM + AHEAD)
def test_a_warm_terminal_runs_the_ides_example(warm, language):
    session_id = take(warm, LANGUAGES[language].example, language, tty=True)
    with warm.attach(session_id) as ws:
        ws.read_stdout_until("Enter your name: ", timeout=60)
        ws.send({"type": "input", "data": "Ada\r"})
        transcript = ws.read_to_end(30)
    assert "Hello Ada\r\n" in transcript.text(), transcript.text()
    assert transcript.ending["exitCode"] == 0


@pytest.mark.parametrize("tty", [False, True], ids=["pipe", "tty"])
@pytest.mark.parametrize("language", [language for language in WARM + AHEAD if language in COMPILE_ERRORS])
def test_a_warm_compiler_reports_as_the_compiler_does(warm, language, tty):
    session_id = take(warm, COMPILE_ERRORS[language], language, tty=tty)
    with warm.attach(session_id) as ws:
        transcript = ws.read_to_end(90)
    states = [m["state"] for _, m in transcript.messages if m["type"] == "state"]
    assert states == ["COMPILING", "FINISHED"]
    assert transcript.final["reason"] == "compile_error"
    assert transcript.final["exitCode"] not in (0, None)
    said = transcript.text() if tty else transcript.text("stderr")
    if language != "typescript":
        # The compiler's own words (on a pipe, relayed by the launcher), naming the file; as
        # stderr on a pipe, and nothing ran.
        assert LANGUAGES[language].source_file in said and (tty or transcript.text() == ""), said
        if language in ("c", "cpp"):
            # gcc colours its diagnostics on a terminal only: it wrote into one (the sandbox's).
            assert ("\x1b[" in said) == tty, said
    else:
        # tsc's own words and exit code: 2, errors reported and the output written anyway.
        assert transcript.final["exitCode"] == 2
        assert "error" in said and "TS2322" in said, said
        # On a terminal tsc is pretty: colours, the line in context and a summary.
        assert ("\x1b[" in said and "Found 1 error" in said) == tty, said


# What `ruby main.rb` or `php main.php` prints that a warm sandbox must print alike (Ruby's warm
# child, launchers/ruby_warm.rb, loads the program; PHP's reads its script from a FIFO): an
# uncaught exception (Ruby's error_highlight underline, the program's top level as <main>, its
# cause; PHP's stack trace), a syntax error, data after the program, the script's own name, an
# exit code and what runs at exit.
PROGRAMS = {
    "ruby": {
        "no_method": 'puts "#{__FILE__} #{$0} #{__FILE__ == $0} #{ARGV.inspect}"\ndef f(x) = x.fooo\nf(1)\n',
        "cause": 'begin\n  raise ArgumentError, "inner"\nrescue => e\n  raise "outer"\nend\n',
        "syntax": "def f\n  puts 1\n",
        "own_syntax": 'eval("(")\n',
        "data": "puts DATA.read\nputs local_variables.inspect\n__END__\nsome été data\n",
        "exit": 'at_exit { puts "bye" }\n$stderr.puts "leaving"\nexit 3\n',
    },
    "php": {
        "trace": (
            "<?php\necho __FILE__, ' ', $argv[0], ' ', $argc, ' ', $_SERVER['SCRIPT_NAME'], ' ',"
            " $_SERVER['PHP_SELF'], ' ', implode(',', get_included_files()), \"\\n\";\n"
            "function f($x) { throw new RuntimeException('boom', 0, new LogicException('first')); }\nf(1);\n"
        ),
        "syntax": "<?php\nfunction f( {\n",
        "warning": "<?php\necho $undefined ?? 'none', \"\\n\";\necho 1 / 0;\n",
        "own_file": (
            "<?php\necho strlen(file_get_contents(__FILE__)), ' ',"
            " readline('? ') === false ? 'eof' : 'line', \"\\n\";\n"
        ),
        "halt": (
            "<?php\necho stream_get_contents(fopen(__FILE__, 'r'), -1, __COMPILER_HALT_OFFSET__);\n"
            "__halt_compiler();some été data\n"
        ),
        "exit": (
            '<?php\nregister_shutdown_function(fn() => print("bye\\n"));\n'
            'fwrite(STDERR, "leaving\\n");\nexit(3);\n'
        ),
    },
}
CASES = [(language, program) for language, programs in PROGRAMS.items() for program in programs]


@pytest.mark.parametrize(("language", "program"), CASES, ids=[f"{lang}-{program}" for lang, program in CASES])
def test_a_warm_program_ends_as_its_plain_run_would(warm, docker_client, language, program):
    code = PROGRAMS[language][program]
    # The reference: the same file run by the language's plain command (`ruby main.rb`), in the
    # same image and environment, its stdin empty.
    spec = LANGUAGES[language]
    container = docker_client.containers.run(
        spec.image,
        [
            "sh",
            "-c",
            f'cd /tmp && printf %s "$CODE" > {spec.source_file} && exec {shlex.join(spec.run)} </dev/null',
        ],
        environment={**spec.env, "CODE": code},
        network_mode="none",
        detach=True,
    )
    try:
        exit_code = container.wait(timeout=60)["StatusCode"]
        expected = (
            container.logs(stdout=True, stderr=False).decode().replace("/tmp/", "/workspace/"),
            container.logs(stdout=False, stderr=True).decode().replace("/tmp/", "/workspace/"),
            exit_code,
        )
    finally:
        container.remove(force=True)
    session_id = take(warm, code, language, tty=False)
    with warm.attach(session_id) as ws:
        if "readline" in code:
            ws.send({"type": "eof"})  # as the plain run's empty stdin
        transcript = ws.read_to_end(30)
    assert (transcript.text(), transcript.text("stderr"), transcript.final["exitCode"]) == expected
