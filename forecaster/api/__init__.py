"""The HTTP API (FastAPI): thin routes over an in-memory view of the forecast store."""
