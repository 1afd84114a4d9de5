"""The pipeline jobs: ingest history, train and gate models, publish forecasts."""
