"""The SQL store: series catalogue, observation history, published forecasts, training log."""
