"""Paste benchmarks/results/*.md into README.md between ``<!-- bench:NAME -->`` markers.

    .venv/bin/python benchmarks/update_readme.py

Each result file is written by the benchmark of the same name; this only copies
text, so the README always shows what a rerunnable command printed.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    for name in re.findall(r"<!-- bench:(\w+) -->", text):
        result = REPO / "benchmarks" / "results" / f"{name}.md"
        body = result.read_text().strip() if result.is_file() else "_not measured yet_"
        body = re.sub(r"^#+ .*\n", "", body, count=1)  # the README has its own heading
        text = re.sub(
            rf"<!-- bench:{name} -->.*?<!-- /bench:{name} -->",
            lambda _m, n=name, b=body: f"<!-- bench:{n} -->\n{b}\n<!-- /bench:{n} -->",
            text,
            flags=re.S,
        )
    readme.write_text(text)
    print(f"updated {readme}")


if __name__ == "__main__":
    main()
