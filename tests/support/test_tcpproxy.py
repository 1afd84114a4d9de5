"""The loopback TCP proxy the stall tests use: closing it leaves no socket open."""

from __future__ import annotations

import gc
import socket
import threading
import warnings

from tests.support.tcpproxy import TcpProxy


def test_closing_while_connections_arrive_leaves_no_socket_open() -> None:
    """A connection accepted by the kernel as the proxy stopped got its transport only
    after the server had closed: asyncio's accept then failed (silently) with the
    socket half wrapped and never closed, and the garbage collection that found it,
    in whatever test ran next, failed that test with an unclosed-transport warning."""
    upstream = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def hammer(port: int) -> None:  # a client retrying its connection, as psycopg does
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    pass
            except OSError:
                pass

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        try:
            for _ in range(10):
                proxy = TcpProxy(upstream.getsockname())
                clients = [
                    threading.Thread(target=hammer, args=(proxy.port,), daemon=True)
                    for _ in range(2)
                ]
                for client in clients:
                    client.start()
                proxy.close()
                stop.set()
                for client in clients:
                    client.join(10)
                stop.clear()
        finally:
            upstream.close()
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []
