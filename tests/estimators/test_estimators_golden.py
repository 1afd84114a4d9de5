"""Golden files: states saved by an earlier release must still load and predict.

Regenerate (only when the state format changes on purpose, bumping STATE_FORMAT)::

    python tests/estimators/test_estimators_golden.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from forecaster.estimators.base import dump_estimator, load_estimator

GOLDEN = Path(__file__).resolve().parent / "golden"
NAMES = ("seasonal_naive", "last_value", "lightgbm", "prophet", "auto")


@pytest.mark.parametrize("name", NAMES)
def test_golden_state_loads_and_predicts(name):
    document = json.loads((GOLDEN / f"{name}.json").read_text())
    estimator = load_estimator(document)
    assert estimator.name == name
    forecast = estimator.predict(12)
    assert len(forecast) == 12
    values = forecast[["yhat", "yhat_lower", "yhat_upper"]].to_numpy()
    assert np.isfinite(values).all()
    assert (forecast["yhat_lower"] <= forecast["yhat"]).all()
    assert (forecast["yhat"] <= forecast["yhat_upper"]).all()
    expected = json.loads((GOLDEN / f"{name}.expected.json").read_text())
    np.testing.assert_allclose(forecast["yhat"].to_numpy(), expected["yhat"], rtol=1e-6)


def _regenerate() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import load_nab

    from forecaster.estimators.auto import AutoEstimator
    from forecaster.estimators.gbm import LightGBMEstimator
    from forecaster.estimators.naive import LastValue, SeasonalNaive
    from forecaster.estimators.prophet import ProphetEstimator

    history = load_nab("realKnownCause/nyc_taxi.csv", days=15, freq="1h")
    estimators = {
        "seasonal_naive": SeasonalNaive(),
        "last_value": LastValue(),
        "lightgbm": LightGBMEstimator(max_horizon=12, n_pairs=2000, n_estimators=15),
        "prophet": ProphetEstimator(),
        "auto": AutoEstimator(candidates=("seasonal_naive", "last_value"), horizon=12),
    }
    GOLDEN.mkdir(exist_ok=True)
    for name, estimator in estimators.items():
        estimator.fit(history)
        document = dump_estimator(estimator)
        (GOLDEN / f"{name}.json").write_text(json.dumps(document, sort_keys=True) + "\n")
        forecast = load_estimator(document).predict(12)
        expected = {"yhat": [float(v) for v in forecast["yhat"]]}
        (GOLDEN / f"{name}.expected.json").write_text(json.dumps(expected) + "\n")


if __name__ == "__main__":
    _regenerate()
