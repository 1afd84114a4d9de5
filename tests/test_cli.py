"""The command line as a user drives it: help, ingest/train/publish, clear errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def _demo_store_env(tmp_path: Path) -> dict[str, str]:
    """Settings that put the demo's store and MLflow under ``tmp_path``."""
    return {
        "FORECASTER_DATABASE__URL": f"sqlite:///{tmp_path}/store.db",
        "FORECASTER_MLFLOW__TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "FORECASTER_MLFLOW__ARTIFACT_LOCATION": str(tmp_path / "artifacts"),
        "FORECASTER_MLFLOW__CACHE_DIR": str(tmp_path / "cache"),
    }


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "forecaster", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=cwd,
        timeout=600,
    )


def test_a_scheduler_without_its_webhook_secret_refuses_before_saying_it_runs(
    tmp_path: Path, write_spec: Any
) -> None:
    """It printed "scheduler running 1 series ...; Ctrl-C stops" and then the refusal."""
    hook = {"webhook": "http://127.0.0.1:9/h", "secret_env": "FORECASTER_TEST_UNSET_HOOK"}
    spec = write_spec(
        tmp_path / "spec.yaml", [{"name": "s", "query": "up", "watch": hook}], step="1m"
    )
    out = _run(["scheduler", "--spec", str(spec)], _demo_store_env(tmp_path), tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "s watch: FORECASTER_TEST_UNSET_HOOK" in out.stderr
    assert "running" not in out.stdout + out.stderr


@pytest.mark.parametrize(
    "command",
    ["ingest", "train", "publish", "serve", "scheduler", "demo", "backtest", "status"],
)
def test_every_command_has_help(command: str, tmp_path: Path) -> None:
    out = _run([command, "--help"], {}, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout


@pytest.mark.integration
def test_ingest_train_publish_from_the_command_line(
    tmp_path: Path, nab: Path, write_spec: Any
) -> None:
    spec = write_spec(
        tmp_path / "spec.yaml",
        [
            {
                "name": "lat",
                "file": str(nab / "realKnownCause/ec2_request_latency_system_failure.csv"),
                "kind": "latency",
                "unit": "ms",
            }
        ],
        history="5d",
        horizon="1h",
        estimators=["seasonal_naive"],
    )
    env = {
        "FORECASTER_PIPELINES": str(spec),
        "FORECASTER_DATABASE__URL": f"sqlite:///{tmp_path}/s.db",
        "FORECASTER_MLFLOW__TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "FORECASTER_MLFLOW__ARTIFACT_LOCATION": str(tmp_path / "artifacts"),
    }
    for early in ("train", "publish"):  # nothing ingested yet: said, not silently skipped
        out = _run([early], env, tmp_path)
        assert out.returncode == 1
        assert "series 'lat' has no history yet; run ingest" in out.stderr
    ingest = _run(["ingest"], env, tmp_path)
    assert ingest.returncode == 0, ingest.stderr
    assert "ingested lat:" in ingest.stdout
    train = _run(["train"], env, tmp_path)
    assert train.returncode == 0, train.stderr
    assert "trained lat: seasonal_naive (champion" in train.stdout
    # no progress bar when stderr is no terminal (a cron or Kubernetes job's log), as
    # ingest and publish
    assert "%|" not in train.stderr
    publish = _run(["publish"], env, tmp_path)
    assert publish.returncode == 0, publish.stderr
    assert "published lat: 12 steps" in publish.stdout

    # the spec's step changes after training: the old champion forecasts on its own
    # grid, which was published labelled with the new step (half the horizon covered)
    write_spec(
        spec,
        [
            {
                "name": "lat",
                "file": str(nab / "realKnownCause/ec2_request_latency_system_failure.csv"),
                "kind": "latency",
                "unit": "ms",
            }
        ],
        step="10m",
        history="5d",
        horizon="1h",
        estimators=["seasonal_naive"],
    )
    mismatched = _run(["publish"], env, tmp_path)
    assert mismatched.returncode == 1
    assert "forecasts in steps of 5m, but the spec's step is 10m" in mismatched.stderr
    assert "forecaster train lat" in mismatched.stderr
    # doing what it says works: the unusable champion does not keep a baseline retrain
    # out (it did: "does not beat the baseline", and the series was never published again)
    retrained = _run(["train", "lat"], env, tmp_path)
    assert retrained.returncode == 0, retrained.stderr
    assert "(champion;" in retrained.stdout
    republished = _run(["publish"], env, tmp_path)
    assert republished.returncode == 0, republished.stderr

    # MLflow unreachable: the training is recorded in the store only and the champion
    # stays, which exited 0 (a cron job never found out)
    down = {
        **env,
        "FORECASTER_MLFLOW__TRACKING_URI": "http://127.0.0.1:9",
        "FORECASTER_MLFLOW__REQUEST_TIMEOUT_SECONDS": "1",
        "FORECASTER_MLFLOW__MAX_RETRIES": "0",
    }
    unregistered = _run(["train", "lat"], down, tmp_path)
    assert unregistered.returncode == 1, unregistered.stdout + unregistered.stderr
    assert "MLflow failed for 1 series (lat)" in unregistered.stderr
    assert "check FORECASTER_MLFLOW__TRACKING_URI" in unregistered.stderr
    assert "trained lat:" in unregistered.stdout  # still said what it did
    assert "published lat: 6 steps" in republished.stdout


def test_bad_spec_and_unknown_series_are_clear_errors(tmp_path: Path, write_spec: Any) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("series:\n  - name: a\n    query: up\n    step: often\n")
    out = _run(
        ["ingest", "--spec", str(bad)],
        {"FORECASTER_DATABASE__URL": f"sqlite:///{tmp_path}/s.db"},
        tmp_path,
    )
    assert out.returncode == 1
    assert "step: cannot parse 'often'" in out.stderr and "step: step:" not in out.stderr
    assert "Traceback" not in out.stderr
    good = write_spec(tmp_path / "good.yaml", [{"name": "a", "query": "up"}])
    out = _run(
        ["train", "nope", "--spec", str(good)],
        {"FORECASTER_DATABASE__URL": f"sqlite:///{tmp_path}/s.db"},
        tmp_path,
    )
    assert out.returncode == 1
    assert "series 'nope' is not in the pipeline spec" in out.stderr
    # a member's name, as status lists it, names its family
    family = write_spec(
        tmp_path / "family.yaml",
        [{"name": "fam", "query": "sum by (pod) (up)", "split_by": ["pod"]}],
    )
    out = _run(
        ["ingest", 'fam{pod="a"}', "--spec", str(family)],
        {"FORECASTER_DATABASE__URL": f"sqlite:///{tmp_path}/s.db"},
        tmp_path,
    )
    assert out.returncode == 1
    assert "is a member of the split_by family 'fam': commands take the family's name" in (
        out.stderr
    )
    helped = _run(["ingest", "--help"], {"COLUMNS": "200"}, tmp_path)
    assert "a split_by family by its name" in " ".join(helped.stdout.split())


def test_a_series_named_twice_runs_once(tmp_path: Path, nab: Path, write_spec: Any) -> None:
    # "forecaster train a a" trained a twice: two MLflow runs, two registered versions
    spec = write_spec(
        tmp_path / "spec.yaml",
        [{"name": "elb", "file": str(nab / "realAWSCloudwatch/elb_request_count_8c0756.csv")}],
        history="2d",
    )
    env = {
        "FORECASTER_PIPELINES": str(spec),
        "FORECASTER_DATABASE__URL": f"sqlite:///{tmp_path}/s.db",
    }
    out = _run(["ingest", "elb", "elb"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("ingested elb:") == 1


def test_prometheus_unreachable_is_reported_and_nothing_written(
    tmp_path: Path, write_spec: Any
) -> None:
    spec = write_spec(tmp_path / "spec.yaml", [{"name": "a", "query": "up"}])
    env = {
        "FORECASTER_DATABASE__URL": f"sqlite:///{tmp_path}/s.db",
        "FORECASTER_PROMETHEUS__URL": "http://127.0.0.1:9",
        "FORECASTER_PROMETHEUS__RETRIES": "1",
        "FORECASTER_PROMETHEUS__BACKOFF_SECONDS": "0.01",
        "FORECASTER_PROMETHEUS__TIMEOUT_SECONDS": "2",
    }
    out = _run(["ingest", "--spec", str(spec)], env, tmp_path)
    assert out.returncode == 1
    assert "127.0.0.1:9" in out.stderr and "FAILED" in out.stderr
    import sqlite3

    rows = (
        sqlite3.connect(tmp_path / "s.db").execute("SELECT count(*) FROM observations").fetchone()
    )
    assert rows == (0,)


def test_the_demo_without_serving_ingests_trains_and_publishes(tmp_path: Path) -> None:
    """`make demo`'s work up to serving, on the bundled traces; --no-serve used to list
    URLs that nothing served."""
    env = _demo_store_env(tmp_path)
    demo = _run(["demo", "--no-serve"], env, REPO)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "3/3 publishing forecasts" in demo.stdout
    assert "Not serving (--no-serve)" in demo.stdout
    assert "/docs" not in demo.stdout and "KEDA scaler" not in demo.stdout
    status = _run(["status", "--spec", "pipelines/demo.yaml"], env, REPO)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "3 series: 3 fine, 0 need attention" in status.stdout


@pytest.mark.parametrize(
    ("to_group", "signum"),
    [(False, "SIGTERM"), (True, "SIGINT"), (True, "SIGHUP")],
    ids=["sigterm", "ctrl-c", "terminal-closed"],
)
def test_sigterm_stops_the_demo_and_the_scheduler_it_started(
    tmp_path: Path, to_group: bool, signum: str
) -> None:
    """uvicorn re-raises the SIGTERM it stopped on: the default action killed the demo
    before its cleanup, and the scheduler it had started ran on, orphaned. Ctrl-C in a
    terminal signals the whole process group: the scheduler got SIGINT from it and then
    the demo's SIGTERM, which it took for a second signal and exited at once, without
    the grace period its running jobs get. A closed terminal (SIGHUP) stops both too."""
    import os
    import re
    import signal
    import time

    from tests.support.promserver import free_port

    env = {**os.environ, **_demo_store_env(tmp_path)}
    log = tmp_path / "demo.log"
    ports = ("--port", str(free_port()), "--scaler-port", str(free_port()))
    with log.open("w") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "forecaster", "demo", *ports],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's job
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not (found := re.search(r"scheduler running \(pid (\d+)\)", log.read_text())):
            assert demo.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        scheduler_pid = int(found.group(1))
        time.sleep(2)  # serving
        if to_group:  # as a terminal signals its foreground job
            os.killpg(demo.pid, getattr(signal, signum))
        else:
            demo.send_signal(getattr(signal, signum))
        assert demo.wait(timeout=60) == 0, log.read_text()
        with pytest.raises(ProcessLookupError):  # stopped and reaped by the demo
            os.kill(scheduler_pid, 0)
        said = log.read_text()
        assert "stopping on SIGTERM" in said  # from the demo, once
        assert "second SIG" not in said and "stopping on SIGINT" not in said
    finally:
        if demo.poll() is None:
            demo.kill()


def test_db_current_says_where_the_store_stands(tmp_path: Path) -> None:
    """Errors name schema revisions; `forecaster db current` shows the store's (there
    was no way to see it but a SQL client)."""
    import sqlite3

    env = {"FORECASTER_DATABASE__URL": f"sqlite:///{tmp_path}/s.db"}
    missing = _run(["db", "current"], env, tmp_path)
    assert missing.returncode == 1
    assert f"no store at {tmp_path}/s.db" in missing.stderr
    assert not (tmp_path / "s.db").exists()  # looking did not create one
    assert _run(["db", "upgrade"], env, tmp_path).returncode == 0
    current = _run(["db", "current"], env, tmp_path)
    assert current.returncode == 0, current.stderr
    head = re.search(r"at revision (\d{4}); this release's schema is (\d{4})", current.stdout)
    assert head is not None and head.group(1) == head.group(2), current.stdout
    with sqlite3.connect(tmp_path / "s.db") as conn:  # as a store left behind by a release
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    behind = _run(["db", "current"], env, tmp_path)
    assert behind.returncode == 1
    assert "at revision 0001" in behind.stdout
    assert "run forecaster db upgrade" in behind.stderr
