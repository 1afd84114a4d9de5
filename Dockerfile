# forecaster image: API (`forecaster serve`), scheduler (`forecaster scheduler`),
# KEDA scaler (`forecaster scaler`) are the same image with different commands.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY forecaster ./forecaster
RUN pip install .
COPY pipelines ./pipelines
COPY data ./data
# the folders the default settings write to (SQLite store, MLflow store and model cache)
RUN useradd --create-home forecaster && mkdir -p /app/models /app/.forecaster \
    && chown forecaster /app/models /app/.forecaster
USER forecaster
EXPOSE 8000 50051
ENTRYPOINT ["forecaster"]
CMD ["serve", "--host", "0.0.0.0"]
