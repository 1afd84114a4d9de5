"""Consumers of published forecasts: replica planning for autoscalers, exporters and friends."""
