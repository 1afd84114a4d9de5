-- A separate database for the MLflow tracking server, next to the forecaster store.
CREATE DATABASE mlflow OWNER forecaster;
