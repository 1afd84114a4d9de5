"""The reference for benchmarks/serving.py: a minimal FastAPI app served the same way.

An ``async`` route, as the API's hot routes are (a plain ``def`` route would run in
the thread pool and measure the hand-off instead).
"""

from __future__ import annotations

from fastapi import FastAPI, Response

app = FastAPI()


@app.get("/hello")
async def hello() -> Response:
    return Response(b'{"hello":"world"}', media_type="application/json")
