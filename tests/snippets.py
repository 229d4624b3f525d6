"""The code blocks of README.md and docs/*.md, for the tests that run them (tests/test_snippets.py).

A block is found by its file and a piece of its text, so a test keeps finding its block while the
prose around it changes, and fails loudly when the block itself is rewritten.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Languages of blocks a reader runs; json and plain blocks show wire frames or layouts.
RUNNABLE = frozenset({"sh", "python", "js", "html"})
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced code block: where it is, its language and its text."""

    path: Path
    line: int
    lang: str
    text: str

    @property
    def where(self) -> str:
        """`file:line`, relative to the repository."""
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """Every fenced block of one Markdown file, in order."""
    text = path.read_text()
    return [
        Block(path, text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2)) for m in _FENCE.finditer(text)
    ]


def runnable_blocks() -> list[Block]:
    """Every block of README.md and docs/*.md in a language a reader runs."""
    return [b for path in DOCUMENTS for b in blocks(path) if b.lang in RUNNABLE]


def block(name: str, containing: str) -> Block:
    """The one runnable block of `name` (relative to the repository) whose text contains `containing`."""
    found = [b for b in blocks(ROOT / name) if b.lang in RUNNABLE and containing in b.text]
    assert len(found) == 1, f"{name}: {len(found)} blocks contain {containing!r}"
    return found[0]


def commands(text: str) -> list[str]:
    """The shell commands of an `sh` block: its lines, comments dropped, continuations joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]
