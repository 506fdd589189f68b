"""The docs stay in step with the code."""

from __future__ import annotations

import re
from pathlib import Path

from mlmon.snapshot import CATALOG

DOCS = Path(__file__).parent.parent / "docs"


def test_metrics_page_lists_every_catalog_name_with_its_type() -> None:
    text = (DOCS / "metrics.md").read_text()
    rows = dict(re.findall(r"^\| `(mlmon_[a-z0-9_]+)` \| (counter|gauge) \|", text, flags=re.M))
    assert set(rows) == set(CATALOG)
    for name, kind in rows.items():
        assert CATALOG[name].kind == kind, name


def test_every_docs_page_is_linked_from_the_index() -> None:
    index = (DOCS / "index.md").read_text()
    for page in DOCS.glob("*.md"):
        if page.name != "index.md":
            assert f"({page.name})" in index, f"docs/index.md does not link {page.name}"
