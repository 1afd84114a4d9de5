"""Sources of history: Prometheus and CSV file replay, behind one protocol."""
