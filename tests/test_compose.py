"""docker-compose.yml is complete and wired (checked without a Docker engine)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def test_services_and_images() -> None:
    services = _compose()["services"]
    for name in (
        "prometheus",
        "postgres",
        "mlflow",
        "forecaster-api",
        "forecaster-scheduler",
        "forecaster-scaler",
        "grafana",
        "demo-service",
    ):
        assert name in services, f"missing service {name}"
        assert "image" in services[name] or "build" in services[name]
    for name, service in services.items():
        if "build" in service:
            context = REPO / (
                service["build"]
                if isinstance(service["build"], str)
                else service["build"].get("context", ".")
            )
            assert (context / "Dockerfile").is_file(), name


def test_bind_mounts_exist_and_volumes_are_declared() -> None:
    compose = _compose()
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} not declared"


def test_forecaster_services_are_wired_by_environment() -> None:
    services = _compose()["services"]
    for name in ("forecaster-api", "forecaster-scheduler", "forecaster-scaler"):
        env = services[name]["environment"]
        assert env["FORECASTER_DATABASE__URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in env["FORECASTER_DATABASE__URL"]
        assert env["FORECASTER_MLFLOW__TRACKING_URI"] == "http://mlflow:5000"
        assert env["FORECASTER_PROMETHEUS__URL"] == "http://prometheus:9090"
        assert env["FORECASTER_ENVIRONMENT"] == "production"
    assert "8000:8000" in services["forecaster-api"]["ports"]
    assert "50051:50051" in services["forecaster-scaler"]["ports"]
    assert services["forecaster-scheduler"]["command"] == ["scheduler"]


def test_postgres_is_healthy_only_once_it_accepts_tcp_connections() -> None:
    """On a fresh volume the postgres image runs its init scripts (the mlflow database)
    on a temporary server listening on the Unix socket only; a socket pg_isready
    passed then, and the services waiting for ``service_healthy`` failed to connect
    over TCP and were restarted."""
    postgres = _compose()["services"]["postgres"]
    test = postgres["healthcheck"]["test"]
    command = test[1] if test[0] == "CMD-SHELL" else " ".join(test[1:])
    assert command.startswith("pg_isready ")
    host = re.search(r"(?:-h|--host)[ =](\S+)", command)
    assert host is not None and host.group(1) in ("127.0.0.1", "localhost"), command
    for name, service in _compose()["services"].items():
        if "postgres" in (service.get("depends_on") or {}):
            assert service["depends_on"]["postgres"]["condition"] == "service_healthy", name


def test_required_secrets_use_strict_interpolation() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    for var in ("POSTGRES_PASSWORD", "FORECASTER_API__TOKEN", "GRAFANA_ADMIN_PASSWORD"):
        uses = re.findall(r"\$\{" + var + r"([^}]*)\}", text)
        assert uses, var
        assert all(u.startswith(":?") for u in uses), f"{var} must use ${{{var}:?...}}"


def test_compose_reads_forecaster_variables_by_their_setting_names() -> None:
    """Compose reads its variables from an .env next to it, which every forecaster
    command run from this folder reads too: a compose-only ``FORECASTER_API_TOKEN``
    there made each command warn "not a forecaster setting (did you mean
    FORECASTER_API__TOKEN?)", and following the hint made compose refuse to start."""
    from forecaster.config import warn_unknown_variables

    text = (REPO / "docker-compose.yml").read_text()
    read = set(re.findall(r"\$\{(\w+)", text))
    assert "FORECASTER_API__TOKEN" in read
    assert warn_unknown_variables({name: "x" for name in read}) == []
    # and each is handed to the services under its own name
    env = _compose()["x-forecaster-env"]
    for name in read:
        if name.startswith("FORECASTER_"):
            assert env[name].startswith("${" + name), name


def test_mlflow_server_uses_postgres_and_an_artifact_volume() -> None:
    mlflow = _compose()["services"]["mlflow"]
    command = " ".join(mlflow["command"])
    assert re.search(r"--backend-store-uri[ =]postgresql://", command)
    assert any(v.startswith("mlflow-artifacts:") for v in mlflow["volumes"])


def test_the_mlflow_service_needs_no_package_index_to_start() -> None:
    """Its command ran ``pip install psycopg2-binary`` before the server, at every
    start: without access to PyPI (an air-gapped host, a proxy) MLflow never came up
    and every training fell back to the baseline, recorded locally only. The driver
    of the postgresql:// backend store is installed when its image is built."""
    mlflow = _compose()["services"]["mlflow"]
    command = " ".join(mlflow["command"])
    assert "pip " not in command and command.startswith("mlflow server ")
    dockerfile = (REPO / mlflow["build"] / "Dockerfile").read_text()
    assert re.search(r"^FROM ghcr\.io/mlflow/mlflow:v\d", dockerfile, re.M)
    assert re.search(r"^RUN pip install .*psycopg2", dockerfile, re.M)


def test_prometheus_config_scrapes_the_api() -> None:
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    targets = [
        t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    ]
    assert "forecaster-api:8000" in targets
    assert "demo-service:8080" in targets


# -- demo service and Grafana ---------------------------------------------------------


def test_demo_service_replays_a_bundled_trace() -> None:
    demo = _compose()["services"]["demo-service"]
    assert (REPO / demo["build"] / "app.py").is_file()
    assert "./data/nab:/data/nab:ro" in demo["volumes"]
    command = demo["command"]
    port = command[command.index("--port") + 1]
    assert f"{port}:{port}" in demo["ports"]
    trace_dir = command[command.index("--trace-dir") + 1]
    assert trace_dir == "/data/nab"


GRAFANA = REPO / "deploy" / "grafana"


def _grafana_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GRAFANA / "dashboards" / "forecaster.json").read_text())
    return data


def test_grafana_is_provisioned_from_the_repo() -> None:
    grafana = _compose()["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/forecaster.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert mounts[path] == "./deploy/grafana/dashboards"
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].startswith(path)
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    uids = {
        panel["datasource"]["uid"]
        for panel in _grafana_dashboard()["panels"]
        if "datasource" in panel
    }
    assert uids == {source["uid"]}


def _panel_queries(series: str = "checkout_rps") -> list[tuple[str, str]]:
    """Every panel query with the variables filled in as Grafana would (``${x:raw}``
    unescaped), ``$series`` set to ``series``."""
    dashboard = _grafana_dashboard()
    variables = {v["name"]: v["current"].get("value") for v in dashboard["templating"]["list"]}
    variables["series"] = series
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = re.sub(
                r"\$\{(\w+)(?::raw)?\}|\$(\w+)",
                lambda m: str(variables[m.group(1) or m.group(2)]),
                target["expr"],
            )
            out.append((panel["title"], expr))
    return out


def test_the_default_series_is_the_one_the_default_actual_measures() -> None:
    """With no current value Grafana picks the first series (alphabetically the p95
    latency) and compared it with the checkout request rate."""
    variables = {v["name"]: v for v in _grafana_dashboard()["templating"]["list"]}
    assert variables["series"]["current"]["value"] == "checkout_rps"
    assert "http_requests_total" in variables["actual"]["current"]["value"]


def test_grafana_dashboard_has_the_promised_panels() -> None:
    titles = [p["title"] for p in _grafana_dashboard()["panels"]]
    assert any(t.startswith("Predicted vs actual") for t in titles)
    assert any(t.startswith("Forecast error over time") for t in titles)
    assert "Pipeline health" in titles
    (detection,) = [p for p in _grafana_dashboard()["panels"] if p["title"].startswith("Anomaly")]
    assert {t["legendFormat"] for t in detection["targets"]} == {
        "score",
        "bar",
        "regression open",
    }
    band = next(
        p
        for p in _grafana_dashboard()["panels"]
        if p["type"] == "timeseries" and p["title"].startswith("Predicted")
    )
    legends = {t["legendFormat"] for t in band["targets"]}
    assert legends == {"actual", "predicted", "lower", "upper"}
    fills = [
        prop
        for override in band["fieldConfig"]["overrides"]
        for prop in override["properties"]
        if prop["id"] == "custom.fillBelowTo"
    ]
    assert fills == [{"id": "custom.fillBelowTo", "value": "lower"}]


def test_forecast_panels_show_an_outage_as_a_gap() -> None:
    """The forecast panels joined every gap (spanNulls: true): hours without a
    forecast or an observation (publishing or ingestion stopped) were drawn as a
    straight line, as if the service had forecast them. Gaps up to 10 minutes (a
    missed scrape or two) are still joined."""
    panels = [
        p
        for p in _grafana_dashboard()["panels"]
        if p["type"] == "timeseries"
        and p["title"].startswith(("Predicted vs actual", "Forecast error over time"))
    ]
    assert len(panels) == 2
    for panel in panels:
        assert panel["fieldConfig"]["defaults"]["custom"]["spanNulls"] == 600_000


def test_forecast_age_turns_orange_when_the_service_calls_it_stale() -> None:
    """A forecast older than the staleness bound is stale to the API and refused by the
    KEDA scaler; the panel showed it green up to 10 minutes."""
    from forecaster.config import ScheduleSettings

    (panel,) = [p for p in _grafana_dashboard()["panels"] if p["title"] == "Forecast age"]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[0] == {"color": "green", "value": None}
    assert steps[1]["value"] == ScheduleSettings().stale_after_seconds
    assert panel["fieldConfig"]["defaults"]["unit"] == "s"


@pytest.mark.parametrize(
    "series", ["checkout_rps", 'checkout_rps_by_route{route="/pay"}', 'f{pod="a\\"b"}']
)
def test_grafana_queries_are_valid_promql(tmp_path: Path, series: str) -> None:
    """Every panel query (variables filled in) passes ``promtool check rules``, also for
    a split_by member, whose name has braces, quotes and slashes (a quoted "$series"
    broke every per-series panel)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (Debian package 'prometheus', make system-deps)")
    rules = {
        "groups": [
            {
                "name": "grafana",
                "rules": [
                    {"record": f"grafana:query_{i}", "expr": expr}
                    for i, (_title, expr) in enumerate(_panel_queries(series))
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_queries_use_only_exported_metrics(make_settings: Any, nab: Path) -> None:
    """Metric names in the panels exist on the forecaster's /metrics or the demo service's."""
    from fastapi.testclient import TestClient
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from forecaster.api.app import create_app
    from forecaster.consumers.regressions import RegressionEvent, Transition
    from forecaster.store.consumers_repo import ConsumersRepo, ScoreRow
    from forecaster.store.db import make_engine
    from forecaster.store.repository import Store
    from tests.support.dashboard_seed import seed_dashboard_store

    settings = make_settings()
    origin = seed_dashboard_store(settings.database.url)
    engine = make_engine(settings.database)
    store = Store(engine)
    # a watched series with a score, a learnt bar and an open regression
    event = RegressionEvent(
        start=origin, end=None, peak_score=4.0, direction="up", model="m", detected_at=origin
    )
    ConsumersRepo(store).save_detection(
        store.series("elb_requests").id,
        state={"bar": 3.0},
        open_event_id=None,
        transitions=[Transition("opened", event)],
        scores=[ScoreRow(origin, 1.0, 1.0, 0.5, 1.5, 4.0, 1, None, "m")],
    )
    with TestClient(create_app(settings, refresh_seconds=0.1)) as client:
        stats = client.app.state.job_stats  # type: ignore[attr-defined]
        stats.min_interval = 0.0
        deadline = time.monotonic() + 10
        while stats.read_ok_at is None:  # counters count the runs after the first read
            assert time.monotonic() < deadline, f"job runs never read: {stats.error}"
            time.sleep(0.05)
        store.record_job_run(
            job="ingest",
            series="elb_requests",
            started_at=origin,
            finished_at=origin,
            ok=True,
            detail=json.dumps({"points": 1}),
        )
        # the API's refresher reads it in the background
        points = "forecaster_points_ingested_total{"
        while points not in (exposition := client.get("/metrics").text):
            assert time.monotonic() < deadline, "the new job run was never read"
            time.sleep(0.05)
    engine.dispose()
    from tests.test_demo_service import _replay

    replay = _replay(nab, scale=10.0)
    replay.tick(1_700_000_000.0, 60.0)
    exposition += generate_latest(replay.registry).decode()
    exported = {s.name for f in text_string_to_metric_families(exposition) for s in f.samples}
    exported.add("up")  # added by Prometheus itself
    used = {
        name
        for _title, expr in _panel_queries()
        for name in re.findall(r"\b((?:forecaster|http)_[a-z_]+|up)\b", expr)
    }
    assert used - exported == set()


# -- the forecaster image ---------------------------------------------------------------


def _dockerfile_steps() -> list[tuple[str, str]]:
    """The forecaster Dockerfile's instructions as (KEYWORD, arguments), continuations joined."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    steps = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            steps.append((keyword.upper(), args.strip()))
    return steps


def test_the_image_user_can_write_where_the_default_settings_write() -> None:
    """The image runs as a non-root user in a root-owned WORKDIR: the folders the
    default settings write to (relative to it) must exist and belong to that user.
    The image's own CMD (``serve`` on the default SQLite store) stopped with "cannot
    create the folder .forecaster of the SQLite store (Permission denied)"."""
    from forecaster.config import DatabaseSettings, MlflowSettings

    steps = _dockerfile_steps()
    (workdir,) = [args for keyword, args in steps if keyword == "WORKDIR"]
    (user,) = [args for keyword, args in steps if keyword == "USER"]
    database = DatabaseSettings().url.split("///", 1)[1]
    mlflow = MlflowSettings()
    wanted = {
        Path(database).parent.parts[0],  # .forecaster/forecaster.db
        mlflow.cache_dir.parts[0],  # models/cache
        Path(mlflow.tracking_uri.split("///", 1)[1]).parts[0],  # models/mlflow.db
    }
    # only what runs before USER is root's; a RUN after it cannot chown
    root_runs = " ".join(
        args for keyword, args in steps[: steps.index(("USER", user))] if keyword == "RUN"
    )
    for folder in sorted(wanted):
        path = f"{workdir.rstrip('/')}/{folder}"
        assert re.search(rf"mkdir -p [^&;]*{re.escape(path)}\b", root_runs), path
        assert re.search(rf"chown [^&;]*\b{user}\b[^&;]* [^&;]*{re.escape(path)}\b", root_runs), (
            path
        )


def test_the_build_context_leaves_out_local_state_and_secrets() -> None:
    """Without a .dockerignore the whole checkout was the build context: after
    ``make demo`` its .venv (1.5 GB) and model store, and an .env of secrets. Every
    path the Dockerfile copies must still be in it."""
    ignore = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for excluded in (".venv", ".env", ".git", ".forecaster", "models/*"):
        assert excluded in ignore, excluded
    copied = [
        source
        for keyword, args in _dockerfile_steps()
        if keyword == "COPY" and "--from" not in args
        for source in args.split()[:-1]
    ]
    assert copied
    for source in copied:
        assert (REPO / source).exists(), source
        assert not any(source == pattern.rstrip("/*") for pattern in ignore), source
