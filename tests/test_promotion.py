"""The promotion gate."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from forecaster.promotion import gate

BASE = dict(baseline="seasonal_naive")


def test_promotes_when_beating_baseline_and_champion() -> None:
    d = gate(
        candidate="prophet",
        candidate_mase=0.7,
        baseline_mase=1.0,
        champion="lightgbm",
        champion_mase=0.8,
        **BASE,
    )
    assert d.promote and "beats the baseline" in d.reason


def test_refuses_when_not_beating_baseline() -> None:
    d = gate(
        candidate="prophet",
        candidate_mase=1.1,
        baseline_mase=1.0,
        champion=None,
        champion_mase=None,
        **BASE,
    )
    assert not d.promote and "does not beat the baseline" in d.reason


def test_refuses_when_worse_than_champion() -> None:
    d = gate(
        candidate="prophet",
        candidate_mase=0.9,
        baseline_mase=1.0,
        champion="lightgbm",
        champion_mase=0.8,
        **BASE,
    )
    assert not d.promote and "worse than the champion lightgbm" in d.reason


def test_baseline_serves_when_nothing_else_exists() -> None:
    d = gate(
        candidate="seasonal_naive",
        candidate_mase=1.0,
        baseline_mase=1.0,
        champion=None,
        champion_mase=None,
        **BASE,
    )
    assert d.promote and "fallback" in d.reason


def test_non_finite_candidate_refused() -> None:
    d = gate(
        candidate="prophet",
        candidate_mase=float("nan"),
        baseline_mase=1.0,
        champion=None,
        champion_mase=None,
        **BASE,
    )
    assert not d.promote


def test_an_unscored_candidate_replaces_only_an_unscored_champion() -> None:
    """A cold start: the champion of the first hours had no backtest score either."""
    cold = gate(
        candidate="seasonal_naive",
        candidate_mase=float("nan"),
        baseline_mase=float("nan"),
        champion="seasonal_naive",
        champion_mase=None,
        **BASE,
    )
    assert cold.promote and "cold start" in cold.reason
    scored = gate(
        candidate="seasonal_naive",
        candidate_mase=float("nan"),
        baseline_mase=float("nan"),
        champion="lightgbm",
        champion_mase=0.7,
        **BASE,
    )
    assert not scored.promote  # a gap in the history does not unseat a backtested model


@given(cand=st.floats(0.01, 5), base=st.floats(0.01, 5), champ=st.none() | st.floats(0.01, 5))
def test_promotion_implies_beating_baseline_and_champion(
    cand: float, base: float, champ: float | None
) -> None:
    d = gate(
        candidate="lightgbm",
        candidate_mase=cand,
        baseline_mase=base,
        champion=None if champ is None else "prophet",
        champion_mase=champ,
        **BASE,
    )
    if d.promote:
        assert cand < base
        assert champ is None or cand <= champ
