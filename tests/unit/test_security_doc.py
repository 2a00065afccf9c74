"""docs/security.md names, for each threat, the test that proves what stops it: a reader must find that test."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"


def _named_tests() -> tuple[set[tuple[str, str]], set[str]]:
    """(file, test) pairs and bare test files the doc names, with its own short names (`attacks` is `...`)
    resolved; paths are relative to tests/, as the doc says."""
    text = DOC.read_text()
    short = dict(re.findall(r"`([\w ]+)` is `([\w/.]+\.py)`", text))
    tests, files = set(), set()
    for quoted in re.findall(r"`([^`]+)`", text):
        if match := re.fullmatch(r"([\w/. ]+)::(\w+)(\[.*\])?", quoted):
            tests.add((short.get(match.group(1), match.group(1)), match.group(2)))
        elif re.fullmatch(r"(unit|integration|e2e|emulator|faults)/[\w/]+\.py", quoted):
            files.add(quoted)
    return tests, files


def test_every_test_the_threat_model_names_exists():
    tests, files = _named_tests()
    assert len(tests) > 50  # the parse found the tables' proofs

    missing = [f"{path}::{name}" for path, name in sorted(tests) if not _defines(path, name)]
    missing += [path for path in sorted(files) if not (ROOT / "tests" / path).is_file()]

    assert missing == []


def _defines(path: str, name: str) -> bool:
    file = ROOT / "tests" / path
    return file.is_file() and re.search(rf"^def {name}\(", file.read_text(), re.MULTILINE) is not None
