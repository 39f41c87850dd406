"""The HTTP server: routes, methods, gzip, stuck clients, shutdown, listen addresses.

TLS, mTLS and basic auth: test_server_tls.py; shared helpers: tests/_server.py."""

from __future__ import annotations

import gzip
import http.client
import socket

import pytest

from _server import (
    CONTENT_TYPE,
    METRICS,
    TIMEOUT,
    FakeApp,
    StartServer,
    http_request,
    still_open,
)
from token_tracker.server import ExporterServer, parse_listen_address


def test_metrics_route(start_server: StartServer) -> None:
    app = FakeApp()
    server = start_server(app)
    status, headers, body = http_request(server, headers={"Accept": "text/plain"})
    assert status == 200
    assert body == METRICS
    assert headers["content-type"] == CONTENT_TYPE
    assert headers["content-length"] == str(len(METRICS))
    assert "content-encoding" not in headers
    assert app.accepts == ["text/plain"]
    assert server.url == f"http://127.0.0.1:{server.address[1]}"


def test_head_sends_headers_only(start_server: StartServer) -> None:
    server = start_server()
    status, headers, body = http_request(server, "HEAD")
    assert status == 200
    assert body == b""
    assert headers["content-length"] == str(len(METRICS))


def test_gzip_when_asked(start_server: StartServer) -> None:
    server = start_server()
    status, headers, body = http_request(server, headers={"Accept-Encoding": "gzip, deflate"})
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == METRICS
    status, headers, body = http_request(server, headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in headers and body == METRICS


def test_status_page_and_health(start_server: StartServer) -> None:
    app = FakeApp()
    server = start_server(app)
    status, headers, body = http_request(server, path="/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "status \u2713" in body.decode("utf-8")
    status, _, body = http_request(server, path="/healthz")
    assert (status, body) == (200, b"ok\n")
    app.healthy = False
    status, _, body = http_request(server, path="/healthz")
    assert (status, body) == (503, b"ledger unreadable\n")


def test_unknown_path_is_404(start_server: StartServer) -> None:
    server = start_server()
    assert http_request(server, path="/nope")[0] == 404
    assert http_request(server, path="/metrics/extra")[0] == 404
    assert http_request(server, path="/metrics?name[]=x")[0] == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "FROB"])
def test_other_methods_are_405(start_server: StartServer, method: str) -> None:
    server = start_server()
    status, headers, _ = http_request(server, method, body=b"payload")
    assert status == 405
    assert headers["allow"] == "GET, HEAD"


def test_keep_alive_serves_several_requests(start_server: StartServer) -> None:
    server = start_server()
    conn = http.client.HTTPConnection(*server.address, timeout=TIMEOUT)
    try:
        for path in ("/metrics", "/healthz", "/"):
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            assert response.status == 200
    finally:
        conn.close()


def test_app_errors_are_500(start_server: StartServer) -> None:
    class Broken(FakeApp):
        def render_metrics(self, accept: str | None) -> tuple[bytes, str]:
            raise RuntimeError("boom")

    server = start_server(Broken())
    assert http_request(server)[0] == 500
    assert http_request(server, path="/healthz")[0] == 200


def test_port_in_use_raises_oserror(start_server: StartServer) -> None:
    server = start_server()
    with pytest.raises(OSError):
        ExporterServer(FakeApp(), port=server.address[1])


def test_shutdown_closes_the_port_and_stuck_connections() -> None:
    server = ExporterServer(FakeApp(), port=0)
    server.start()
    port = server.address[1]
    assert http_request(server)[0] == 200
    stuck = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        stuck.sendall(b"GET /metrics HTTP/1.1\r\n")
        assert http_request(server)[0] == 200  # make sure the stuck one was accepted
        server.shutdown()
        server.shutdown()  # idempotent
        assert stuck.recv(1024) == b""  # its connection was closed, not left to time out
    finally:
        stuck.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    with pytest.raises(RuntimeError):
        server.start()


def test_shutdown_without_start() -> None:
    server = ExporterServer(FakeApp(), port=0)
    port = server.address[1]
    server.shutdown()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()


def test_slow_client_does_not_block_scrapes(start_server: StartServer) -> None:
    server = start_server()
    stuck = socket.create_connection(server.address, timeout=TIMEOUT)
    try:
        stuck.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        for _ in range(3):
            assert http_request(server)[0] == 200
        assert still_open(stuck)
    finally:
        stuck.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        (":9464", ("0.0.0.0", 9464)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_listen_address(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(value) == expected


@pytest.mark.parametrize(
    "value", ["", "9464", "127.0.0.1", "::1:9464", "host:port", "h:70000", "[x]:1", "[::1]"]
)
def test_parse_listen_address_rejects(value: str) -> None:
    with pytest.raises(ValueError, match=r"--web\.listen-address"):
        parse_listen_address(value)


def test_ipv6_loopback(start_server: StartServer) -> None:
    try:
        server = ExporterServer(FakeApp(), host="::1", port=0)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        server.start()
        assert server.url.startswith("http://[::1]:")
        assert http_request(server)[0] == 200
    finally:
        server.shutdown()
