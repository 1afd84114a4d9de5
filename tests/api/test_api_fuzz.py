"""Fuzz every API operation from its OpenAPI schema: no 5xx, every 4xx carries a message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from forecaster.api.app import create_app
from forecaster.config import load_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.api.test_api import _seed

    tmp: Path = tmp_path_factory.mktemp("fuzz")
    app_settings = load_settings(
        database={"url": f"sqlite:///{tmp / 'store.db'}"},
        api={"token": "fuzz-token-value"},
        mlflow={"tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}"},
    )
    _seed(app_settings)
    app = create_app(app_settings, refresh_seconds=3600)
    app.state.view.refresh()
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _has_message(response: Any) -> bool:
    body = response.json()
    detail = body.get("detail") if isinstance(body, dict) else None
    return bool(detail)


def test_no_server_errors_and_explained_client_errors(api_schema: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 5
    checked: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            for headers in (None, {"Authorization": "Bearer fuzz-token-value"}):
                response = case.call(headers=headers)
                where = (case.method, case.formatted_path, case.query, response.text[:300])
                assert response.status_code < 500, where
                if 400 <= response.status_code < 500:
                    assert _has_message(response), where

        run()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert "GET /v1/series/{name}/forecast" in checked
