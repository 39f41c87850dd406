"""The HTTPS server and its web config: TLS, mTLS, basic auth, stuck TLS clients."""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from _server import METRICS, TIMEOUT, StartServer, http_request, still_open
from token_tracker.webconfig import WebConfig, load_web_config


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
    status, _, body = http_request(server, context=_client_context(pki))
    assert (status, body) == (200, METRICS)
    # Plain HTTP to the TLS port gets no HTTP response.
    _assert_rejected(lambda: http_request(server))
    # And the server still serves TLS afterwards.
    assert http_request(server, context=_client_context(pki))[0] == 200


def test_tls_client_that_never_handshakes_does_not_block(
    start_server: StartServer, pki: Path, tmp_path: Path
) -> None:
    server = start_server(web_config=_tls_config(pki, tmp_path))
    silent = socket.create_connection(server.address, timeout=TIMEOUT)
    half = socket.create_connection(server.address, timeout=TIMEOUT)
    try:
        half.sendall(b"\x16\x03\x01\x02\x00")  # the first bytes of a ClientHello, then nothing
        for _ in range(3):
            assert http_request(server, context=_client_context(pki))[0] == 200
        assert still_open(silent)
        assert still_open(half)
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
    _assert_rejected(lambda: http_request(server, context=_client_context(pki)))
    status, _, body = http_request(server, context=_client_context(pki, with_cert=True))
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
        status, response_headers, _ = http_request(server, headers=headers)
        assert status == 401
        assert response_headers["www-authenticate"] == 'Basic realm="token-tracker"'
    for path in ("/metrics", "/", "/healthz"):
        status, response_headers, _ = http_request(
            server, path=path, headers=_basic("prometheus", "hunter2")
        )
        assert status == 200
        assert response_headers["x-content-type-options"] == "nosniff"
    assert http_request(server, "POST", body=b"x")[0] == 401
    assert http_request(server, "POST", headers=_basic("prometheus", "hunter2"))[0] == 405


def test_tls_with_basic_auth(start_server: StartServer, pki: Path, tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    config = _tls_config(pki, tmp_path, f"basic_auth_users:\n  u: '{hashed}'\n")
    server = start_server(web_config=config)
    ctx = _client_context(pki)
    assert http_request(server, context=ctx)[0] == 401
    assert http_request(server, context=ctx, headers=_basic("u", "pw"))[0] == 200
