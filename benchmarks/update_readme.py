"""Paste benchmarks/results/*.md into README.md between ``<!-- bench:NAME -->`` markers.

    .venv/bin/python benchmarks/update_readme.py

Each result file is written by the benchmark of the same name; this only copies
text, so the README always shows what a rerunnable command printed. A result's own
title is dropped (the README has its heading) and its other headings are nested
under the README section that holds the marker, so the README's outline stays one
tree instead of each pasted table opening a top-level section.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADING = re.compile(r"^(#+) ", re.M)


def nest_headings(body: str, parent_level: int) -> str:
    """``body`` with its headings moved so the shallowest sits one below ``parent_level``."""
    levels = [len(m.group(1)) for m in HEADING.finditer(body)]
    if not levels:
        return body
    shift = parent_level + 1 - min(levels)
    return HEADING.sub(lambda m: "#" * max(1, len(m.group(1)) + shift) + " ", body)


def paste(text: str, name: str, body: str) -> str:
    """``text`` with the block between NAME's markers replaced by ``body``."""
    body = re.sub(r"^#+ .*\n", "", body.strip(), count=1).strip()  # the README has its heading
    before = text[: text.find(f"<!-- bench:{name} -->")]
    before = re.sub(r"<!-- bench:(\w+) -->.*?<!-- /bench:\1 -->", "", before, flags=re.S)
    before = re.sub(r"^```.*?^```", "", before, flags=re.S | re.M)  # no "# comment" lines
    above = [len(m.group(1)) for m in HEADING.finditer(before)]
    body = nest_headings(body, above[-1] if above else 1)
    return re.sub(
        rf"<!-- bench:{name} -->.*?<!-- /bench:{name} -->",
        lambda _m: f"<!-- bench:{name} -->\n{body}\n<!-- /bench:{name} -->",
        text,
        flags=re.S,
    )


def main() -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    for name in re.findall(r"<!-- bench:(\w+) -->", text):
        result = REPO / "benchmarks" / "results" / f"{name}.md"
        body = result.read_text() if result.is_file() else "_not measured yet_"
        text = paste(text, name, body)
    readme.write_text(text)
    print(f"updated {readme}")


if __name__ == "__main__":
    main()
