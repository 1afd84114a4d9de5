"""Shared fixtures: network guard, isolated settings, SQLite and PostgreSQL stores."""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

# Property tests are reproducible in CI: the same examples on every run.
hypothesis_settings.register_profile("forecaster", derandomize=True, deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "forecaster"))

REPO = Path(__file__).resolve().parents[1]
NAB = REPO / "data" / "nab"
PG_BASE = os.environ.get("FORECASTER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if isinstance(address, tuple) and address:
        host = address[0]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None and not ip.is_loopback:
            raise RuntimeError(f"test tried to reach {address!r}: only loopback is allowed")
        if ip is None and host not in ("localhost",):
            raise RuntimeError(f"test tried to reach {address!r}: only loopback is allowed")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _no_external_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection to a non-loopback address fails loudly."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No FORECASTER_* variables or .env leak into tests; caches stay per test."""
    for key in list(os.environ):
        if key.startswith("FORECASTER_") and key != "FORECASTER_TEST_PG":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    from forecaster.config import get_settings

    get_settings.cache_clear()


def _pg_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    if not _pg_available():
        pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (start it, see .ci/run)")
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def _write_spec(path: Path, series: list[dict[str, Any]], **defaults: Any) -> Path:
    import yaml

    data = {"version": 1, "defaults": defaults or {}, "series": series}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def write_spec() -> Any:
    """``write_spec(path, series, **defaults)`` writes a pipeline spec YAML and returns its path."""
    return _write_spec


@pytest.fixture
def nab() -> Path:
    """The bundled NAB traces (data/nab)."""
    return NAB


@pytest.fixture
def make_settings(tmp_path: Path) -> Any:
    """Factory of isolated settings (database, MLflow store and spec under tmp_path)."""
    from forecaster.config import load_settings

    def factory(db: str | None = None, spec: Path | None = None, **overrides: Any) -> Any:
        mlflow = {
            "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "artifact_location": str(tmp_path / "artifacts"),
            "cache_dir": tmp_path / "cache",
            "max_retries": 0,
            **overrides.pop("mlflow", {}),
        }
        database = {
            "url": db or f"sqlite:///{tmp_path / 'store.db'}",
            **overrides.pop("database", {}),
        }
        return load_settings(
            database=database,
            mlflow=mlflow,
            pipelines=spec or tmp_path / "spec.yaml",
            **overrides,
        )

    return factory
