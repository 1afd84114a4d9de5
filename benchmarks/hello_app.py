"""The ceiling for benchmarks/serving.py: a minimal FastAPI app served the same way."""

from __future__ import annotations

from fastapi import FastAPI, Response

app = FastAPI()


@app.get("/hello")
def hello() -> Response:
    return Response(b'{"hello":"world"}', media_type="application/json")
