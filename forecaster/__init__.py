"""forecaster: self-hosted machine-learning load forecasting for microservice platforms."""

from __future__ import annotations

__version__ = "0.1.0"
