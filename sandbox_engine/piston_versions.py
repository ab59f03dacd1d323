"""Piston's version ranges: which installed version a request's `version` asks for.

Piston picks a runtime with node-semver's `satisfies(version, range)`; clients send an exact
version, `*`, or a range. This is the part of npm's range grammar they use: `*` and `x`, partial
versions (`3`, `3.11`, `3.x`), the operators `=`, `<`, `<=`, `>`, `>=`, `^` and `~`, ranges
joined by spaces (all must hold), `||` (either) and hyphen ranges (`1.2 - 2`). Versions compare
on their first three numbers; pre-release and build tags are not told apart. Pure functions.
"""

from __future__ import annotations

import re

Version = tuple[int, int, int]

_OPERATOR = r"(<=|>=|<|>|=|\^|~>?)"
_COMPARATOR = re.compile(_OPERATOR + r"?v?([0-9xX*]+(?:\.[0-9xX*]+){0,2})(?:[-+][0-9A-Za-z.+-]*)?$")
_WILD = ("x", "X", "*")


def parse_version(text: str) -> Version | None:
    """The first three numbers of a version (missing ones are 0): 6.8.0.105 is (6, 8, 0)."""
    match = re.match(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", text.strip())
    if match is None:
        return None
    return tuple(int(part or 0) for part in match.groups())  # type: ignore[return-value]


def satisfies(version: str, wanted: str) -> bool:
    """Whether `version` is in the range `wanted`, as node-semver's satisfies() says."""
    have = parse_version(version)
    if have is None:
        return False
    return any(_all_hold(have, alternative) for alternative in wanted.split("||"))


def _all_hold(have: Version, alternative: str) -> bool:
    # An operator may stand apart from its version (">= 3.1"): join them first.
    tokens = re.sub(_OPERATOR + r"\s+", r"\1", alternative.strip()).split()
    if len(tokens) == 3 and tokens[1] == "-":
        tokens = [">=" + tokens[0], "<=" + tokens[2]]
    checks = []
    for token in tokens or ["*"]:
        primitives = _primitives(token)
        if primitives is None:
            return False  # not a range node-semver reads: it satisfies nothing
        checks += primitives
    return all(_compare(have, op, bound) for op, bound in checks)


def _primitives(token: str) -> list[tuple[str, Version]] | None:
    """One comparator as plain comparisons with full versions; None when it is not one."""
    match = _COMPARATOR.match(token)
    if match is None:
        return None
    op = match.group(1) or "="
    parts: list[int] = []
    for part in match.group(2).split("."):
        if part in _WILD:
            break  # 3.x.1 is 3.x: what follows a wildcard does not count
        if not part.isdigit():
            return None
        parts.append(int(part))
    n = len(parts)
    full: Version = tuple(parts + [0] * (3 - n))  # type: ignore[assignment]
    if n == 0:
        # *, >=* and the like: any version; >* and <*: none.
        return [("<", (0, 0, 0))] if op in ("<", ">") else []
    if op == "=":
        return [("=", full)] if n == 3 else [(">=", full), ("<", _next(parts, n - 1))]
    if op.startswith("~"):
        return [(">=", full), ("<", _next(parts, min(n - 1, 1)))]
    if op == "^":
        first = next((i for i, part in enumerate(parts) if part), n - 1)
        return [(">=", full), ("<", _next(parts, first))]
    if op == ">":
        return [(">", full)] if n == 3 else [(">=", _next(parts, n - 1))]
    if op == "<=":
        return [("<=", full)] if n == 3 else [("<", _next(parts, n - 1))]
    return [(op, full)]  # >= and <


def _next(parts: list[int], index: int) -> Version:
    """The first version past every one that starts with parts[:index + 1]."""
    bumped = parts[:index] + [parts[index] + 1]
    return tuple(bumped + [0] * (3 - len(bumped)))  # type: ignore[return-value]


def _compare(have: Version, op: str, bound: Version) -> bool:
    return {
        "=": have == bound,
        "<": have < bound,
        "<=": have <= bound,
        ">": have > bound,
        ">=": have >= bound,
    }[op]
