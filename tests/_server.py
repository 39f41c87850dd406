"""The in-process ExporterServer of test_server.py and test_server_tls.py: a fake app,
a fixture that starts servers on free ports (registered from tests/conftest.py via
``pytest_plugins``) and one raw HTTP(S) request."""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Callable, Iterator

import pytest

from token_tracker.server import ExporterServer
from token_tracker.webconfig import WebConfig

METRICS = b"# TYPE tokens_total counter\ntokens_total 42\n" * 50
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TIMEOUT = 10.0


class FakeApp:
    """Records what it was asked; health can be flipped."""

    def __init__(self) -> None:
        self.healthy = True
        self.accepts: list[str | None] = []

    def render_metrics(self, accept: str | None) -> tuple[bytes, str]:
        self.accepts.append(accept)
        return METRICS, CONTENT_TYPE

    def status_page(self) -> str:
        return "<!DOCTYPE html><html><body><p>status \u2713</p></body></html>"

    def health(self) -> tuple[bool, str]:
        return (True, "ok") if self.healthy else (False, "ledger unreadable")


StartServer = Callable[..., ExporterServer]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    servers: list[ExporterServer] = []

    def start(app: object | None = None, web_config: WebConfig | None = None) -> ExporterServer:
        server = ExporterServer(app or FakeApp(), port=0, web_config=web_config)  # type: ignore[arg-type]
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.shutdown()


def http_request(
    server: ExporterServer,
    method: str = "GET",
    path: str = "/metrics",
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: (status, lower-case headers, body)."""
    host, port = server.address
    conn: http.client.HTTPConnection
    if context is not None:
        conn = http.client.HTTPSConnection(host, port, timeout=TIMEOUT, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def still_open(sock: socket.socket) -> bool:
    """True when the peer has neither closed nor written anything."""
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(TIMEOUT)
    return False
