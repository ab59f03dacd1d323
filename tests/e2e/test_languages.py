"""Every language, as its users write it, through the real server: live prompts, errors, compiles.

The languages are the specs': a language without its programs in the tables below fails here.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from harness import GVISOR, LANGUAGE_IDS, shutdown, start_server

from sandbox_engine.languages import LANGUAGES

# Every test here runs a real server on the real Docker daemon.
pytestmark = [pytest.mark.docker, pytest.mark.slow]

# A greeting as a user of each language writes it: the prompt without a newline, read a line,
# greet. Rust flushes by hand, as Rust users do (its stdout is line-buffered even on a terminal).
GREETINGS = {
    "python": 'name = input("Enter your name: ")\nprint(f"Hello, {name}!")\n',
    "javascript": (
        "const readline = require('readline');\n"
        "const rl = readline.createInterface({ input: process.stdin });\n"
        "process.stdout.write('Enter your name: ');\n"
        "rl.once('line', (name) => { console.log(`Hello, ${name}!`); rl.close(); });\n"
    ),
    "typescript": (
        "import * as readline from 'readline';\n"
        "const rl = readline.createInterface({ input: process.stdin });\n"
        "process.stdout.write('Enter your name: ');\n"
        "rl.once('line', (name: string) => { console.log(`Hello, ${name}!`); rl.close(); });\n"
    ),
    "c": (
        "#include <stdio.h>\n"
        "int main(void) {\n"
        "    char name[100];\n"
        '    printf("Enter your name: ");\n'
        '    if (scanf("%99s", name) != 1) return 1;\n'
        '    printf("Hello, %s!\\n", name);\n'
        "    return 0;\n"
        "}\n"
    ),
    "cpp": (
        "#include <iostream>\n#include <string>\n"
        "int main() {\n"
        "    std::string name;\n"
        '    std::cout << "Enter your name: ";\n'
        "    std::getline(std::cin, name);\n"
        '    std::cout << "Hello, " << name << "!" << std::endl;\n'
        "}\n"
    ),
    "go": (
        'package main\n\nimport (\n\t"bufio"\n\t"fmt"\n\t"os"\n\t"strings"\n)\n\n'
        "func main() {\n"
        '\tfmt.Print("Enter your name: ")\n'
        "\tname, _ := bufio.NewReader(os.Stdin).ReadString('\\n')\n"
        '\tfmt.Printf("Hello, %s!\\n", strings.TrimSpace(name))\n'
        "}\n"
    ),
    "rust": (
        "use std::io::{self, Write};\n"
        "fn main() {\n"
        '    print!("Enter your name: ");\n'
        "    io::stdout().flush().unwrap();\n"
        "    let mut name = String::new();\n"
        "    io::stdin().read_line(&mut name).unwrap();\n"
        '    println!("Hello, {}!", name.trim());\n'
        "}\n"
    ),
    "java": (
        "import java.util.Scanner;\n\n"
        "public class Main {\n"
        "    public static void main(String[] args) {\n"
        "        Scanner in = new Scanner(System.in);\n"
        '        System.out.print("Enter your name: ");\n'
        "        String name = in.nextLine();\n"
        '        System.out.println("Hello, " + name + "!");\n'
        "    }\n"
        "}\n"
    ),
    "ruby": 'print "Enter your name: "\nname = gets.chomp\nputs "Hello, #{name}!"\n',
    "php": '<?php\necho "Enter your name: ";\n$name = trim(fgets(STDIN));\necho "Hello, $name!\\n";\n',
    "perl": 'print "Enter your name: ";\nmy $name = <STDIN>;\nchomp $name;\nprint "Hello, $name!\\n";\n',
    "lua": 'io.write("Enter your name: ")\nlocal name = io.read("l")\nprint("Hello, " .. name .. "!")\n',
    "bash": 'printf "Enter your name: "\nread -r name\necho "Hello, $name!"\n',
    "csharp": (
        "using System;\n\n"
        "class Program {\n"
        "    static void Main() {\n"
        '        Console.Write("Enter your name: ");\n'
        "        string name = Console.ReadLine();\n"
        '        Console.WriteLine($"Hello, {name}!");\n'
        "    }\n"
        "}\n"
    ),
    "haskell": (
        "main :: IO ()\n"
        "main = do\n"
        '  putStr "Enter your name: "\n'
        "  name <- getLine\n"
        '  putStrLn ("Hello, " ++ name ++ "!")\n'
    ),
}

# A runtime error and the exit code the language gives it.
RUNTIME_ERRORS = {
    "python": ("raise SystemExit(3)", 3),
    "javascript": ("process.exit(3);", 3),
    "typescript": ("process.exit(3);", 3),
    "c": ("#include <stdlib.h>\nint main(void) { exit(3); }\n", 3),
    "cpp": ("#include <cstdlib>\nint main() { std::exit(3); }\n", 3),
    "go": ('package main\n\nimport "os"\n\nfunc main() { os.Exit(3) }\n', 3),
    "rust": ("fn main() { std::process::exit(3); }\n", 3),
    "java": ("public class Main { public static void main(String[] a) { System.exit(3); } }\n", 3),
    "ruby": ("exit 3\n", 3),
    "php": ("<?php\nexit(3);\n", 3),
    "perl": ("exit 3;\n", 3),
    "lua": ("os.exit(3)\n", 3),
    "bash": ("exit 3\n", 3),
    "csharp": ("class P { static int Main() { return 3; } }\n", 3),
    "haskell": ("import System.Exit\nmain :: IO ()\nmain = exitWith (ExitFailure 3)\n", 3),
}

# Uncaught errors: the language's own message on stderr, and a non-zero exit code.
CRASHES = {
    "python": ("x = 1 / 0\n", "ZeroDivisionError", 1),
    "javascript": ("null.x;\n", "TypeError", 1),
    "ruby": ("raise 'boom'\n", "boom", 1),
    "java": (
        "public class Main { public static void main(String[] a) { int[] x = new int[1]; x[2] = 1; } }\n",
        "ArrayIndexOutOfBoundsException",
        1,
    ),
    "rust": ('fn main() { let v: Vec<i32> = vec![]; println!("{}", v[1]); }\n', "panicked", 101),
    "go": ('package main\n\nfunc main() { var m map[string]int; m["x"] = 1 }\n', "panic", 2),
}

COMPILED = [spec.id for spec in LANGUAGES.values() if spec.compile is not None]
COMPILE_ERRORS = {
    "typescript": "const x: number = 'not a number';\n",
    "c": "int main(void) { return undefined_name; }\n",
    "cpp": "int main() { return undefined_name; }\n",
    "go": "package main\n\nfunc main() { undefinedName() }\n",
    "rust": 'fn main() { let x: i32 = "no"; }\n',
    "java": 'public class Main { public static void main(String[] a) { int x = "no"; } }\n',
    "csharp": 'class P { static void Main() { int x = "no"; } }\n',
    "haskell": "main :: IO ()\nmain = putStrLn (1 + True)\n",
}


@pytest.fixture(scope="module")
def polyglot(docker_client, tmp_path_factory):
    # Compilers get their own generous limits; the run keeps the defaults.
    server = start_server(docker_client, tmp_path_factory, workers=2, idle_timeout=30, run_timeout=60)
    yield server
    shutdown(server)


@pytest.mark.parametrize("language", LANGUAGE_IDS)
def test_greeting_prompt_arrives_before_input(polyglot, language):
    session_id = polyglot.create(GREETINGS[language], language)
    with polyglot.attach(session_id) as ws:
        if language in COMPILED:
            assert ws.recv(10) == {"type": "state", "state": "COMPILING"}
        # The prompt has no newline: it must arrive while the program waits, before any input.
        assert ws.read_stdout_until("Enter your name: ", timeout=60) == "Enter your name: "
        assert {"type": "state", "state": "RUNNING"} in [m for _, m in ws.messages]
        ws.send({"type": "input", "data": "Ada\n"})
        transcript = ws.read_to_end(30)
    assert transcript.text() == "Enter your name: Hello, Ada!\n", transcript.text("stderr")
    assert transcript.ending == {
        "type": "state",
        "state": "FINISHED",
        "exitCode": 0,
        "reason": "exited",
        "signal": None,
    }


@pytest.mark.parametrize("tty", [False, True], ids=["pipe", "tty"])
@pytest.mark.parametrize("language", LANGUAGE_IDS)
def test_the_ides_example_prompts_reads_and_greets(polyglot, language, tty):
    # The program GET /languages gives the IDE to start from, as a user who just presses Run (the
    # IDE runs it on a terminal; the API's users on pipes). It flushes nothing by hand where the
    # README says no program needs to, and its prompt must still arrive before it reads.
    example = LANGUAGES[language].example
    terminal = {"tty": True, "cols": 100, "rows": 30} if tty else {}
    response = polyglot.post(example, language=language, **terminal)
    assert response.status_code == 201, response.text
    with polyglot.attach(response.json()["sessionId"]) as ws:
        ws.read_stdout_until("Enter your name: ", timeout=60)
        if tty and language == "csharp":
            # Mono's console asks the terminal where its cursor is; answer as a terminal does.
            ws.read_stdout_until("\x1b[6n", timeout=10)
            ws.send({"type": "input", "data": "\x1b[1;18R"})
        ws.send({"type": "input", "data": "Ada\r" if tty else "Ada\n"})
        transcript = ws.read_to_end(30)
    if tty:
        assert "Hello Ada\r\n" in transcript.text(), transcript.text()
    else:
        assert "Enter your name: Hello Ada\n" in transcript.text(), transcript.text("stderr")
    assert transcript.ending == {
        "type": "state",
        "state": "FINISHED",
        "exitCode": 0,
        "reason": "exited",
        "signal": None,
    }
    if language != "rust":
        # Rust's print! is line-buffered even on a terminal: its example flushes, as Rust users do.
        assert not re.search(r"flush|\$\| *= *1", example, re.I), example


@pytest.mark.parametrize("language", LANGUAGE_IDS)
def test_exit_code_passes_through(polyglot, language):
    code, exit_code = RUNTIME_ERRORS[language]
    transcript = polyglot.run(code, language=language, timeout=90)
    assert transcript.final["state"] == "FINISHED", transcript.text("stderr")
    assert transcript.final["exitCode"] == exit_code


@pytest.mark.parametrize("language", list(CRASHES))
def test_uncaught_error_reports_on_stderr(polyglot, language):
    code, says, exit_code = CRASHES[language]
    transcript = polyglot.run(code, language=language, timeout=90)
    assert says in transcript.text("stderr")
    assert transcript.final["exitCode"] == exit_code


@pytest.mark.parametrize("language", COMPILED)
def test_compile_error(polyglot, language):
    session_id = polyglot.create(COMPILE_ERRORS[language], language)
    with polyglot.attach(session_id) as ws:
        transcript = ws.read_to_end(90)
    states = [m["state"] for _, m in transcript.messages if m["type"] == "state"]
    assert states == ["COMPILING", "FINISHED"]
    assert transcript.final["reason"] == "compile_error"
    assert transcript.final["exitCode"] not in (0, None)
    # The compiler's diagnostics reach the client as stderr (tsc prints them on stdout; the
    # launcher sends compiler output to stderr).
    assert transcript.text("stderr").strip() and transcript.text() == ""
    assert polyglot.session(session_id)["reason"] == "compile_error"


@pytest.mark.parametrize("language", LANGUAGE_IDS)
def test_greeting_in_tty_mode(polyglot, language):
    if GVISOR and language in ("java", "csharp"):
        pytest.skip(
            "gVisor's terminal (runsc 2022) answers FIONREAD with ENOTTY: Java's System.in then "
            "fails with 'Illegal seek', and Mono never reads the terminal's answer to its query"
        )
    response = polyglot.post(GREETINGS[language], language=language, tty=True, cols=100, rows=30)
    assert response.status_code == 201, response.text
    with polyglot.attach(response.json()["sessionId"]) as ws:
        ws.read_stdout_until("Enter your name: ", timeout=60)
        if language == "csharp":
            # Mono's console asks the terminal where its cursor is; answer as a terminal does.
            ws.read_stdout_until("\x1b[6n", timeout=10)
            ws.send({"type": "input", "data": "\x1b[1;18R"})
        ws.send({"type": "input", "data": "Ada\r"})
        transcript = ws.read_to_end(30)
    text = transcript.text()
    assert transcript.final["exitCode"] == 0
    if language == "csharp":
        # Mono's own line editor draws the line, with cursor movement that a terminal renders.
        assert "Hello, Ada!\r\n" in text, text
    else:
        # The terminal echoes what was typed; its output ends lines with \r\n.
        assert text.endswith("Enter your name: Ada\r\nHello, Ada!\r\n"), text


@pytest.fixture(scope="module")
def patient(docker_client, tmp_path_factory):
    # A short idle timeout, a long input timeout: a program at a prompt must get the second.
    server = start_server(
        docker_client, tmp_path_factory, workers=2, idle_timeout=3, input_timeout=60, run_timeout=120
    )
    yield server
    shutdown(server)


def test_a_prompt_in_every_language_and_mode_outlives_the_idle_timeout(patient):
    """Issue 10: a person thinking at a prompt is not killed after the idle timeout. The engine
    sees from the kernel that the program waits on its stdin, whatever the language reads with."""
    failures: list[str] = []
    lock = threading.Lock()
    slots = threading.Semaphore(8)

    def greet(language: str, tty: bool) -> None:
        with slots:
            try:
                response = patient.post(GREETINGS[language], language=language, tty=tty)
                with patient.attach(response.json()["sessionId"]) as ws:
                    ws.read_stdout_until("Enter your name: ", timeout=120)
                    # Twice the idle timeout at the prompt: nothing may end it (a terminal may
                    # still get escape sequences, as mono's console writes).
                    quiet_until = time.monotonic() + 6
                    while (left := quiet_until - time.monotonic()) > 0:
                        try:
                            message = ws.recv(left)
                        except TimeoutError:
                            break
                        if message["type"] == "state":
                            raise AssertionError(f"while waiting at the prompt: {message}")
                    ws.send({"type": "input", "data": "Ada\r" if tty else "Ada\n"})
                    transcript = ws.read_to_end(60)
                assert "Hello, Ada!" in transcript.text(), transcript.text()
                assert transcript.final["reason"] == "exited", transcript.final
            except Exception as exc:  # noqa: BLE001 - every language's failure is shown
                with lock:
                    failures.append(f"{language} ({'tty' if tty else 'pipe'}): {exc!r}"[:300])

    threads = [
        threading.Thread(target=greet, args=(language, tty))
        for language in LANGUAGE_IDS
        for tty in (False, True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert not failures, "\n".join(failures)


def test_the_input_timeout_ends_an_unanswered_prompt_and_the_idle_timeout_a_silent_program(make_server):
    server = make_server(workers=1, idle_timeout=2, input_timeout=6)
    with (
        server.attach(server.create('input("? ")')) as prompt,
        server.attach(server.create("import time\ntime.sleep(60)")) as silent,
    ):
        prompt.read_stdout_until("? ")
        quiet = silent.read_to_end(30)
        asked = prompt.read_to_end(30)
    assert quiet.final["reason"] == "idle_timeout"
    assert 1.5 < quiet.messages[-1][0] < 6
    assert asked.final["reason"] == "input_timeout"
    assert asked.messages[-1][0] >= 5.5
