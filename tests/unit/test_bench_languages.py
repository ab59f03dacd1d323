"""bench-languages' own section of BENCHMARKS.md: its table, and how it takes its place beside the
parts that make bench and make soak write."""

from __future__ import annotations

from sandbox_engine import bench_languages as bl
from sandbox_engine.bench import KEEP_FROM
from sandbox_engine.languages import LANGUAGES


def row(language: str, warm: float, floor_parts: dict[str, float]) -> bl.Row:
    floor = bl.Split(sum(floor_parts.values()), floor_parts)
    return bl.Row(language, bl.Split(warm, {"POST": 0.01, "RUNNING": warm - 0.01}), None, floor)


def test_every_language_has_a_hello_world():
    assert set(bl.HELLO) == set(LANGUAGES)


def test_the_table_says_each_ratio_against_the_floors_compile_and_run_and_its_verdict():
    rows = [
        row("typescript", 0.3, {"start": 0.3, "compile": 1.5, "run": 0.1}),
        row("c", 0.25, {"start": 0.3, "compile": 0.08, "run": 0.01}),
    ]
    table = bl.table(rows)
    floor = "1900 (start 300 + compile 1500 + run 100)"
    assert f"| TypeScript | 300 (POST 10 + RUNNING 290) | - | {floor} |" in table
    assert "| 0.19 ✓ | 0.16 |" in table and "| 2.78 ✗ | 0.64 |" in table
    assert "Worst ratio: 2.78." in bl.section(rows, 3, "cmd")


def test_its_section_replaces_its_last_and_keeps_the_rest(tmp_path):
    markdown = tmp_path / "BENCHMARKS.md"
    soak = f"{KEEP_FROM}: written by make soak -->\nsoak\n<!-- /soak -->\n"
    rest = f"# Benchmarks\n\nmake bench's part\n\n{soak}"
    markdown.write_text(rest)
    first = bl.section([row("c", 0.25, {"start": 0.3, "compile": 0.1, "run": 0.1})], 3, "cmd")
    bl.write(str(markdown), first)
    second = bl.section([row("c", 0.2, {"start": 0.3, "compile": 0.1, "run": 0.1})], 3, "cmd")
    bl.write(str(markdown), second)
    text = markdown.read_text()
    # After make soak's part, which make bench keeps from KEEP_FROM on: so it keeps this too.
    assert text == rest + "\n" + second
    assert text.index(KEEP_FROM) < text.index(bl.BEGIN) and text.count(bl.BEGIN) == 1
