"""The HTTP(S) server: routes, methods, gzip, TLS, mTLS, basic auth, stuck clients, shutdown."""

from __future__ import annotations

import base64
import datetime
import gzip
import http.client
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from token_tracker.server import ExporterServer, parse_listen_address
from token_tracker.webconfig import WebConfig, load_web_config

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


def _request(
    server: ExporterServer,
    method: str = "GET",
    path: str = "/metrics",
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
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


# --- plain HTTP ---------------------------------------------------------------------------


def test_metrics_route(start_server: StartServer) -> None:
    app = FakeApp()
    server = start_server(app)
    status, headers, body = _request(server, headers={"Accept": "text/plain"})
    assert status == 200
    assert body == METRICS
    assert headers["content-type"] == CONTENT_TYPE
    assert headers["content-length"] == str(len(METRICS))
    assert "content-encoding" not in headers
    assert app.accepts == ["text/plain"]
    assert server.url == f"http://127.0.0.1:{server.address[1]}"


def test_head_sends_headers_only(start_server: StartServer) -> None:
    server = start_server()
    status, headers, body = _request(server, "HEAD")
    assert status == 200
    assert body == b""
    assert headers["content-length"] == str(len(METRICS))


def test_gzip_when_asked(start_server: StartServer) -> None:
    server = start_server()
    status, headers, body = _request(server, headers={"Accept-Encoding": "gzip, deflate"})
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == METRICS
    status, headers, body = _request(server, headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in headers and body == METRICS


def test_status_page_and_health(start_server: StartServer) -> None:
    app = FakeApp()
    server = start_server(app)
    status, headers, body = _request(server, path="/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "status \u2713" in body.decode("utf-8")
    status, _, body = _request(server, path="/healthz")
    assert (status, body) == (200, b"ok\n")
    app.healthy = False
    status, _, body = _request(server, path="/healthz")
    assert (status, body) == (503, b"ledger unreadable\n")


def test_unknown_path_is_404(start_server: StartServer) -> None:
    server = start_server()
    assert _request(server, path="/nope")[0] == 404
    assert _request(server, path="/metrics/extra")[0] == 404
    assert _request(server, path="/metrics?name[]=x")[0] == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "FROB"])
def test_other_methods_are_405(start_server: StartServer, method: str) -> None:
    server = start_server()
    status, headers, _ = _request(server, method, body=b"payload")
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
    assert _request(server)[0] == 500
    assert _request(server, path="/healthz")[0] == 200


def test_port_in_use_raises_oserror(start_server: StartServer) -> None:
    server = start_server()
    with pytest.raises(OSError):
        ExporterServer(FakeApp(), port=server.address[1])


def test_shutdown_closes_the_port_and_stuck_connections() -> None:
    server = ExporterServer(FakeApp(), port=0)
    server.start()
    port = server.address[1]
    assert _request(server)[0] == 200
    stuck = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        stuck.sendall(b"GET /metrics HTTP/1.1\r\n")
        assert _request(server)[0] == 200  # make sure the stuck one was accepted
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


def _still_open(sock: socket.socket) -> bool:
    """True when the peer has neither closed nor written anything."""
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(TIMEOUT)
    return False


def test_slow_client_does_not_block_scrapes(start_server: StartServer) -> None:
    server = start_server()
    stuck = socket.create_connection(server.address, timeout=TIMEOUT)
    try:
        stuck.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        for _ in range(3):
            assert _request(server)[0] == 200
        assert _still_open(stuck)
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
        assert _request(server)[0] == 200
    finally:
        server.shutdown()


# --- TLS, mTLS, basic auth -----------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_pem(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    server: bool = False,
    client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), False
        )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
    if client:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    directory = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _issue("token-tracker test CA", ca_key, None)
    _write_pem(directory / "ca", ca, ca_key)
    for name, kwargs in (("server", {"server": True}), ("client", {"client": True})):
        key = _key()
        _write_pem(directory / name, _issue(name, key, (ca, ca_key), **kwargs), key)
    return directory


def _web_config(directory: Path, text: str) -> WebConfig:
    path = directory / "web.yml"
    path.write_text(text, encoding="utf-8")
    return load_web_config(path)


def _tls_config(pki: Path, tmp_path: Path, extra: str = "") -> WebConfig:
    return _web_config(
        tmp_path,
        f"tls_server_config:\n  cert_file: {pki / 'server.crt'}\n"
        f"  key_file: {pki / 'server.key'}\n{extra}",
    )


def _client_context(pki: Path, with_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if with_cert:
        ctx.load_cert_chain(pki / "client.crt", pki / "client.key")
    return ctx


def _assert_rejected(fetch: Callable[[], object]) -> None:
    """The server refused promptly: an error other than our own client timeout."""
    with pytest.raises((OSError, http.client.HTTPException)) as info:
        fetch()
    assert not isinstance(info.value, TimeoutError)


def test_tls(start_server: StartServer, pki: Path, tmp_path: Path) -> None:
    server = start_server(web_config=_tls_config(pki, tmp_path))
    assert server.url.startswith("https://127.0.0.1:")
    status, _, body = _request(server, context=_client_context(pki))
    assert (status, body) == (200, METRICS)
    # Plain HTTP to the TLS port gets no HTTP response.
    _assert_rejected(lambda: _request(server))
    # And the server still serves TLS afterwards.
    assert _request(server, context=_client_context(pki))[0] == 200


def test_tls_client_that_never_handshakes_does_not_block(
    start_server: StartServer, pki: Path, tmp_path: Path
) -> None:
    server = start_server(web_config=_tls_config(pki, tmp_path))
    silent = socket.create_connection(server.address, timeout=TIMEOUT)
    half = socket.create_connection(server.address, timeout=TIMEOUT)
    try:
        half.sendall(b"\x16\x03\x01\x02\x00")  # the first bytes of a ClientHello, then nothing
        for _ in range(3):
            assert _request(server, context=_client_context(pki))[0] == 200
        assert _still_open(silent)
        assert _still_open(half)
    finally:
        silent.close()
        half.close()


def test_mtls(start_server: StartServer, pki: Path, tmp_path: Path) -> None:
    config = _tls_config(
        pki,
        tmp_path,
        f"  client_ca_file: {pki / 'ca.crt'}\n  client_auth_type: RequireAndVerifyClientCert\n",
    )
    server = start_server(web_config=config)
    _assert_rejected(lambda: _request(server, context=_client_context(pki)))
    status, _, body = _request(server, context=_client_context(pki, with_cert=True))
    assert (status, body) == (200, METRICS)


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_basic_auth(start_server: StartServer, tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"hunter2", bcrypt.gensalt(rounds=4)).decode()
    config = _web_config(
        tmp_path,
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
        "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n",
    )
    server = start_server(web_config=config)
    for headers in ({}, _basic("prometheus", "wrong"), _basic("grafana", "hunter2")):
        status, response_headers, _ = _request(server, headers=headers)
        assert status == 401
        assert response_headers["www-authenticate"] == 'Basic realm="token-tracker"'
    for path in ("/metrics", "/", "/healthz"):
        status, response_headers, _ = _request(
            server, path=path, headers=_basic("prometheus", "hunter2")
        )
        assert status == 200
        assert response_headers["x-content-type-options"] == "nosniff"
    assert _request(server, "POST", body=b"x")[0] == 401
    assert _request(server, "POST", headers=_basic("prometheus", "hunter2"))[0] == 405


def test_tls_with_basic_auth(start_server: StartServer, pki: Path, tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    config = _tls_config(pki, tmp_path, f"basic_auth_users:\n  u: '{hashed}'\n")
    server = start_server(web_config=config)
    ctx = _client_context(pki)
    assert _request(server, context=ctx)[0] == 401
    assert _request(server, context=ctx, headers=_basic("u", "pw"))[0] == 200
