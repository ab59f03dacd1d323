"""Every language, as its users write it, through the real server: live prompts, errors, compiles.

The languages are the specs': a language without its programs in the tables below fails here.
"""

from __future__ import annotations

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
    assert transcript.final == {"type": "state", "state": "FINISHED", "exitCode": 0, "reason": "exited"}


@pytest.mark.parametrize("language", LANGUAGE_IDS)
def test_the_ides_example_prompts_reads_and_greets(polyglot, language):
    # The program GET /languages gives the IDE to start from, as a user who just presses Run.
    with polyglot.attach(polyglot.create(LANGUAGES[language].example, language)) as ws:
        ws.read_stdout_until("Enter your name: ", timeout=60)
        ws.send({"type": "input", "data": "Ada\n"})
        transcript = ws.read_to_end(30)
    assert "Enter your name: Hello Ada\n" in transcript.text(), transcript.text("stderr")
    assert transcript.final == {"type": "state", "state": "FINISHED", "exitCode": 0, "reason": "exited"}


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
