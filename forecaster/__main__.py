"""``python -m forecaster``: the command line."""

from __future__ import annotations

from forecaster.cli import main

main()
