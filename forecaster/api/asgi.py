"""ASGI entry point for servers: ``uvicorn forecaster.api.asgi:app``.

Settings are read when the server imports this module (a process start), not when
the package is imported. A server process freezes its start-up heap out of the
garbage collector's scans once the view is loaded (``freeze_heap``).
"""

from __future__ import annotations

from forecaster.api.app import create_app
from forecaster.config import get_settings

app = create_app(get_settings(), freeze_heap=True)
