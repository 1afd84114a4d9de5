"""A loopback TCP proxy between the processes under test and PostgreSQL, to cut or
stall the database without touching the real server.

``TcpProxy(("127.0.0.1", 5432))`` listens on a free loopback port, in a thread of its
own. ``cut()`` closes every connection and refuses new ones (the database went away),
``stall()`` keeps every connection open and accepts new ones but forwards nothing
(a half-open connection: a firewall that drops packets, a hung server), and
``restore()`` forwards again. Run as a script it takes the modes from its control
port, one word a line (``cut``, ``stall``, ``pass``), for processes in other shells:
``python -m tests.support.tcpproxy LISTEN_PORT CONTROL_PORT [TARGET_PORT]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from typing import Any

PASS, CUT, STALL = "pass", "cut", "stall"


class TcpProxy:
    """A loopback TCP proxy whose forwarding can be cut, stalled and restored."""

    def __init__(self, target: tuple[str, int], port: int = 0) -> None:
        self.target = target
        self.mode = PASS
        self._wanted_port = port
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._resumed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        assert self._server is not None
        self.port: int = self._server.sockets[0].getsockname()[1]

    def url(self, base: str) -> str:
        """``base`` (a PostgreSQL URL on ``target``) through the proxy."""
        host, port = self.target
        return base.replace(f"{host}:{port}", f"127.0.0.1:{self.port}", 1)

    # -- control (from any thread) ----------------------------------------------------
    def cut(self) -> None:
        """Close every connection; new ones are closed at once (connection refused
        would need the port closed, and another process could take it)."""
        self._call(self._set, CUT)

    def stall(self) -> None:
        """Keep every connection (and accept new ones) but forward nothing."""
        self._call(self._set, STALL)

    def restore(self) -> None:
        """Forward again (stalled bytes held back are then delivered)."""
        self._call(self._set, PASS)

    def close(self) -> None:
        """Stop the proxy and close every connection."""
        self._call(self._set, CUT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()

    def _call(self, func: Any, *args: Any) -> None:
        done = threading.Event()

        def run() -> None:
            func(*args)
            done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(10)

    # -- the loop ---------------------------------------------------------------------
    def _set(self, mode: str) -> None:
        self.mode = mode
        if mode == PASS:
            self._resumed.set()
            return
        self._resumed.clear()
        if mode == CUT:
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._resumed.set()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", self._wanted_port)
        )
        self._ready.set()
        self._loop.run_forever()
        # Stop accepting, but close the server only once the connections the kernel
        # had already accepted are wrapped and their handlers started (each sees CUT
        # and closes its sockets). Closed first, asyncio failed to wrap them (silently:
        # "assert self._sockets is not None" in Server._attach) and never closed them,
        # nor the ones whose wrapping was cancelled below before it began; a later
        # test's garbage collection reported them as unclosed and failed (the stalled
        # readiness test after the scheduler lock tests, 1 run in 5 and worse).
        for listening in self._server.sockets:
            self._loop.remove_reader(listening.fileno())
        self._loop.run_until_complete(asyncio.sleep(0.1))
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.run_until_complete(self._server.wait_closed())
        self._loop.run_until_complete(asyncio.sleep(0))  # the aborts' socket closes
        self._loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_writer: asyncio.StreamWriter | None = None
        try:  # both sockets are closed however this ends (cancelled at close() too)
            if self.mode == CUT:
                return
            self._writers.add(writer)
            await self._resumed.wait()  # a connection made while stalled waits too
            if self.mode == CUT:
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                return
            self._writers.add(up_writer)
            await asyncio.gather(
                self._pipe(reader, up_writer),
                self._pipe(up_reader, writer),
                return_exceptions=True,
            )
        finally:
            for each in (writer, up_writer):
                if each is not None:
                    each.transport.abort()
                    self._writers.discard(each)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._resumed.wait()
                if writer.transport.is_closing():
                    return
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()


def main(argv: list[str]) -> None:
    listen, control = int(argv[0]), int(argv[1])
    target = int(argv[2]) if len(argv) > 2 else 5432
    proxy = TcpProxy(("127.0.0.1", target), port=listen)
    sys.stdout.write(f"proxy 127.0.0.1:{proxy.port} -> 127.0.0.1:{target}; control on {control}\n")
    sys.stdout.flush()
    import socketserver

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for line in self.rfile:
                word = line.decode().strip()
                action = {CUT: proxy.cut, STALL: proxy.stall, PASS: proxy.restore}.get(word)
                if action is not None:
                    action()
                    sys.stdout.write(f"proxy: {word}\n")
                    sys.stdout.flush()
                self.wfile.write(f"{proxy.mode}\n".encode())

    with socketserver.TCPServer(("127.0.0.1", control), Handler) as server:
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    proxy.close()


if __name__ == "__main__":
    main(sys.argv[1:])
