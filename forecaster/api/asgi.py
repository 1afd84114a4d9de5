"""ASGI entry point for servers: ``uvicorn forecaster.api.asgi:app``.

Settings are read when the server imports this module (a process start), not when
the package is imported.
"""

from __future__ import annotations

from forecaster.api.app import create_app
from forecaster.config import get_settings

app = create_app(get_settings())
