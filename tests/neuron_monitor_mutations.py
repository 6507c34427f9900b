"""Hostile variations of the neuron-monitor fixture reports, for the fuzz tests of the bridge.

A variation is a valid fixture report with a value replaced (numbers past the float range,
NaN and infinities as JSON's non-standard tokens, negative numbers, booleans, strings, deep
nesting, containers where numbers go) or an object key renamed (negative or huge indexes),
at any path of the report.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

FIXTURES = Path(__file__).parent / "fixtures" / "neuron-monitor"

Path_ = tuple[Any, ...]

HOSTILE_VALUES: tuple[Any, ...] = (
    10**400,
    -(10**400),
    2**64,
    1e300,
    math.nan,
    math.inf,
    -math.inf,
    -1,
    -0.5,
    101.0,
    True,
    False,
    None,
    "12",
    "",
    "line one\nline two",
    [],
    {},
    [1, [2]],
    {"p50": 1},
)
HOSTILE_KEYS = ("-1", "9" * 400, " 1", "+1", "\u0663", "01", "x", "")

_DEEP = re.compile(r'"\\u0000deep:(\d+)"')


def fixture_documents() -> list[dict[str, Any]]:
    """The fixture lines that are reports (v1 and v2)."""
    documents = []
    for name in ("v1.jsonl", "v2.jsonl"):
        for line in (FIXTURES / name).read_text().splitlines():
            try:
                document = json.loads(line)
            except ValueError:
                continue
            if isinstance(document, dict):
                documents.append(document)
    return documents


def deep(depth: int) -> str:
    """A value that `encode` writes as `depth` nested arrays."""
    return f"\0deep:{depth}"


def paths(document: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every path to a value inside `document` (the root excluded)."""
    found: list[Path_] = []
    items = (
        document.items()
        if isinstance(document, dict)
        else enumerate(document)
        if isinstance(document, list)
        else ()
    )
    for key, value in items:
        found.append((*prefix, key))
        found.extend(paths(value, (*prefix, key)))
    return found


def replaced(document: dict[str, Any], path: Path_, value: Any) -> dict[str, Any]:
    result = json.loads(json.dumps(document))  # a deep copy, faster than copy.deepcopy
    parent = result
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return result


def renamed(document: dict[str, Any], path: Path_, key: str) -> dict[str, Any]:
    """`document` with the object key at the end of `path` renamed (a list index is left alone)."""
    result = json.loads(json.dumps(document))  # a deep copy, faster than copy.deepcopy
    parent = result
    for step in path[:-1]:
        parent = parent[step]
    if isinstance(parent, dict):
        parent[key] = parent.pop(path[-1])
    return result


def encode(document: Any) -> str:
    """One JSON line; NaN and infinities as the tokens Python's json writes, deep values expanded."""
    text = json.dumps(document)
    return _DEEP.sub(lambda match: "[" * int(match[1]) + "]" * int(match[1]), text)


def random_hostile_line(rng: random.Random, documents: list[dict[str, Any]]) -> str:
    """A fixture report with one to four hostile changes at random paths."""
    document = rng.choice(documents)
    for _ in range(rng.randint(1, 4)):
        path = rng.choice(paths(document))
        if rng.random() < 0.2:
            document = renamed(document, path, rng.choice(HOSTILE_KEYS))
        elif rng.random() < 0.05:
            document = replaced(document, path, deep(rng.choice((50, 900, 5000))))
        else:
            document = replaced(document, path, rng.choice(HOSTILE_VALUES))
    return encode(document)


@st.composite
def hostile_lines(draw: st.DrawFn) -> str:
    """A fixture report with one to four hostile changes at any paths (a hypothesis strategy)."""
    document = draw(st.sampled_from(fixture_documents()))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(paths(document)))
        if draw(st.booleans()) and isinstance(path[-1], str):
            document = renamed(document, path, draw(st.sampled_from(HOSTILE_KEYS) | st.text(max_size=4)))
            continue
        value = draw(
            st.sampled_from(HOSTILE_VALUES)
            | st.integers()
            | st.integers(min_value=300, max_value=1000).map(lambda digits: 10**digits)
            | st.floats()
            | st.text(max_size=5)
            | st.integers(min_value=2, max_value=5000).map(deep)
        )
        document = replaced(document, path, value)
    return encode(document)
