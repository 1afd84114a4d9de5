"""A real ``mlflow server`` for tests, on a free loopback port with its own backend store.

Usage::

    with running_mlflow_server(tmp_path) as url:                 # SQLite backend
        ...
    with running_mlflow_server(tmp_path, backend=pg_url) as url:  # PostgreSQL backend

The server is started in its own process group and stopped (SIGTERM, then SIGKILL)
on exit; start-up takes 15-40 s on a loaded 2-core machine (its database migrations).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.promserver import free_port

START_TIMEOUT = 120.0


@contextlib.contextmanager
def running_mlflow_server(
    folder: Path, *, backend: str | None = None, port: int | None = None
) -> Iterator[str]:
    """Serve MLflow (tracking and registry) from ``folder``; yields its base URL.

    Args:
        folder: Holds the SQLite backend (unless ``backend`` is given), the
            artifact root and the server's log.
        backend: A backend store URI (a PostgreSQL URL, say).
        port: The port (default: a free one); give the same one to restart a server.
    """
    import httpx

    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    backend = backend or f"sqlite:///{folder / 'mlflow-server.db'}"
    log = (folder / "mlflow-server.log").open("ab")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", backend,
            "--default-artifact-root", (folder / "server-artifacts").as_uri(),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server did not start: {(folder / 'mlflow-server.log').read_text()}"
                )
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=15)
        log.close()
