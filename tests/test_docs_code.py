"""Every Python block in the README and the docs runs as a doctest.

pytest collects the Markdown files with ``--doctest-glob=*.md``, but a fenced block without
``>>>`` lines is plain text to doctest: it is never run and can rot unnoticed. Blocks that are not
Python (shell commands, wire formats, diagrams) carry a language tag such as ``text`` or ``bash``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# An untagged block counts as Python: tag the others (text, bash, promql, ini, yaml...).
PYTHON_TAGS = {"", "python", "py", "python3", "pycon"}

_OPEN = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")


def code_blocks(text: str) -> list[tuple[int, str, str]]:
    """``(line, tag, body)`` of every fenced block, ``line`` counted from 1 at the opening fence."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _OPEN.match(lines[i].lstrip())
        if opening is None:
            i += 1
            continue
        fence = opening["fence"]
        tag = opening["info"].split()[0].lower() if opening["info"].strip() else ""
        closing = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = i + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        blocks.append((i + 1, tag, "\n".join(lines[i + 1 : end])))
        i = end + 1
    return blocks


def test_code_blocks_are_found_with_their_tags() -> None:
    text = "a\n```python\n>>> 1\n1\n```\n\n````\nx\n```\n````\n  ~~~ bash\nls\n  ~~~\n"
    assert [(2, "python", ">>> 1\n1"), (7, "", "x\n```"), (11, "bash", "ls")] == code_blocks(text)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_python_block_is_a_doctest(page: Path) -> None:
    not_run = [
        f"{page.name}:{line} (```{tag})"
        for line, tag, body in code_blocks(page.read_text())
        if tag in PYTHON_TAGS and ">>>" not in body
    ]
    assert [] == not_run, (
        "these blocks never run: write them as doctests (>>> with real output) "
        "or give non-Python blocks a language tag such as text or bash"
    )
