// Editor support per language id of GET /languages: a CodeMirror mode, loaded on first use so the
// page does not download fifteen grammars up front, and an example program to start from.
import { StreamLanguage } from "@codemirror/language";

const legacy = (load) => async () => StreamLanguage.define(await load());

// Canonical name -> how to load its mode. Ids the server may spell differently are aliased below.
const MODES = {
  python: { name: "Python", load: async () => (await import("@codemirror/lang-python")).python() },
  javascript: {
    name: "JavaScript",
    load: async () => (await import("@codemirror/lang-javascript")).javascript(),
  },
  typescript: {
    name: "TypeScript",
    load: async () => (await import("@codemirror/lang-javascript")).javascript({ typescript: true }),
  },
  c: { name: "C", load: async () => (await import("@codemirror/lang-cpp")).cpp() },
  cpp: { name: "C++", load: async () => (await import("@codemirror/lang-cpp")).cpp() },
  go: { name: "Go", load: async () => (await import("@codemirror/lang-go")).go() },
  rust: { name: "Rust", load: async () => (await import("@codemirror/lang-rust")).rust() },
  java: { name: "Java", load: async () => (await import("@codemirror/lang-java")).java() },
  php: { name: "PHP", load: async () => (await import("@codemirror/lang-php")).php() },
  ruby: { name: "Ruby", load: legacy(async () => (await import("@codemirror/legacy-modes/mode/ruby")).ruby) },
  perl: { name: "Perl", load: legacy(async () => (await import("@codemirror/legacy-modes/mode/perl")).perl) },
  lua: { name: "Lua", load: legacy(async () => (await import("@codemirror/legacy-modes/mode/lua")).lua) },
  bash: { name: "Shell", load: legacy(async () => (await import("@codemirror/legacy-modes/mode/shell")).shell) },
  csharp: {
    name: "C#",
    load: legacy(async () => (await import("@codemirror/legacy-modes/mode/clike")).csharp),
  },
  haskell: {
    name: "Haskell",
    load: legacy(async () => (await import("@codemirror/legacy-modes/mode/haskell")).haskell),
  },
};

const ALIASES = {
  python3: "python", py: "python", js: "javascript", node: "javascript", nodejs: "javascript",
  ts: "typescript", "c++": "cpp", cxx: "cpp", golang: "go", rs: "rust", rb: "ruby", pl: "perl",
  sh: "bash", shell: "bash", "c#": "csharp", cs: "csharp", hs: "haskell",
};

export function canonical(id) {
  const key = String(id).toLowerCase();
  return MODES[key] ? key : ALIASES[key] || null;
}

/** The name of the editor mode for a language id, "Plain text" when there is none. */
export function modeName(id) {
  const key = canonical(id);
  return key ? MODES[key].name : "Plain text";
}

/** The CodeMirror extension for a language id: its mode, or [] (plain text) if unknown or unloadable. */
export async function loadMode(id) {
  const key = canonical(id);
  if (!key) return [];
  try {
    return await MODES[key].load();
  } catch (err) {
    console.warn(`no syntax highlighting for ${id}:`, err);
    return [];
  }
}

const EXAMPLES = {
  python: `import time
print("Program started")
name = input("Enter your name: ")
print("Hello", name)
for i in range(5):
    time.sleep(1)
    print(i)
`,
  javascript: `const readline = require("node:readline");

const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
rl.question("Enter your name: ", (name) => {
  console.log("Hello", name);
  rl.close();
});
`,
  typescript: `import * as readline from "node:readline";

const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
rl.question("Enter your name: ", (name: string) => {
  console.log(\`Hello \${name}\`);
  rl.close();
});
`,
  c: `#include <stdio.h>
#include <string.h>

int main(void) {
    char name[100] = "";
    printf("Enter your name: ");
    fflush(stdout);
    if (fgets(name, sizeof name, stdin)) name[strcspn(name, "\\n")] = '\\0';
    printf("Hello %s\\n", name);
    return 0;
}
`,
  cpp: `#include <iostream>
#include <string>

int main() {
    std::string name;
    std::cout << "Enter your name: " << std::flush;
    std::getline(std::cin, name);
    std::cout << "Hello " << name << std::endl;
}
`,
  go: `package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

func main() {
	fmt.Print("Enter your name: ")
	name, _ := bufio.NewReader(os.Stdin).ReadString('\\n')
	fmt.Println("Hello", strings.TrimSpace(name))
}
`,
  rust: `use std::io::{self, Write};

fn main() {
    print!("Enter your name: ");
    io::stdout().flush().unwrap();
    let mut name = String::new();
    io::stdin().read_line(&mut name).unwrap();
    println!("Hello {}", name.trim());
}
`,
  java: `import java.util.Scanner;

public class Main {
    public static void main(String[] args) {
        Scanner in = new Scanner(System.in);
        System.out.print("Enter your name: ");
        System.out.flush();
        String name = in.hasNextLine() ? in.nextLine() : "";
        System.out.println("Hello " + name);
    }
}
`,
  ruby: `print "Enter your name: "
$stdout.flush
name = gets.to_s.chomp
puts "Hello #{name}"
`,
  php: `<?php
echo "Enter your name: ";
$name = trim((string) fgets(STDIN));
echo "Hello $name\\n";
`,
  perl: `use strict;
use warnings;

$| = 1;
print "Enter your name: ";
my $name = <STDIN> // "";
chomp $name;
print "Hello $name\\n";
`,
  lua: `io.write("Enter your name: ")
io.flush()
local name = io.read("*l") or ""
print("Hello " .. name)
`,
  bash: `printf "Enter your name: "
read -r name
echo "Hello $name"
`,
  csharp: `using System;

class Program
{
    static void Main()
    {
        Console.Write("Enter your name: ");
        var name = Console.ReadLine();
        Console.WriteLine($"Hello {name}");
    }
}
`,
  haskell: `import System.IO

main :: IO ()
main = do
  putStr "Enter your name: "
  hFlush stdout
  name <- getLine
  putStrLn ("Hello " ++ name)
`,
};

/** A program to start from for a language id; empty for a language this page does not know. */
export function example(id) {
  return EXAMPLES[canonical(id)] || "";
}
