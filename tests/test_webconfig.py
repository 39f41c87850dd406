"""Parsing and validation of the exporter-toolkit web config file."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import ssl
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from token_tracker.errors import ConfigError
from token_tracker.webconfig import WebConfig, load_web_config


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(text, encoding="utf-8")
    return path


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_empty_file_means_plain_http_without_auth(tmp_path: Path) -> None:
    config = load_web_config(_write(tmp_path, ""))
    assert config.tls is None
    assert config.ssl_context() is None
    assert not config.auth_required
    assert config.check_basic_auth(None)


def test_tls_paths_resolve_relative_to_the_config_file(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    _self_signed(certs)
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    path = conf_dir / "web.yml"
    path.write_text(
        "tls_server_config:\n"
        "  cert_file: ../certs/server.crt\n"
        "  key_file: ../certs/server.key\n"
        "  min_version: TLS13\n"
        "http_server_config:\n"
        "  http2: false\n"
        "  headers:\n"
        "    x-frame-options: deny\n",
        encoding="utf-8",
    )
    config = load_web_config(path)
    assert config.tls is not None
    assert config.tls.cert_file == (certs / "server.crt").resolve()
    assert config.tls.client_auth_type == "NoClientCert"
    assert config.headers == {"X-Frame-Options": "deny"}
    ctx = config.ssl_context()
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode == ssl.CERT_NONE


def test_mtls_config_requires_client_certificates(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    path = _write(
        tmp_path,
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
        f"  client_ca_file: {cert}\n  client_auth_type: RequireAndVerifyClientCert\n",
    )
    ctx = load_web_config(path).ssl_context()
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED


def test_basic_auth_checks_bcrypt_and_caches(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    config = load_web_config(_write(tmp_path, f"basic_auth_users:\n  alice: '{hashed}'\n"))
    assert config.auth_required
    assert config.check_basic_auth(_basic("alice", "s3cret"))
    assert config.check_basic_auth(_basic("alice", "s3cret"))  # from the cache
    assert config._auth_cache.keys() == {"alice"}
    assert not config.check_basic_auth(_basic("alice", "wrong"))
    assert not config.check_basic_auth(_basic("bob", "s3cret"))
    assert not config.check_basic_auth(None)
    assert not config.check_basic_auth("")
    assert not config.check_basic_auth("Bearer abc")
    assert not config.check_basic_auth("Basic !!!not-base64")
    assert not config.check_basic_auth("Basic " + base64.b64encode(b"no-colon").decode())
    assert not config.check_basic_auth(_basic("alice", "x" * 100))  # over bcrypt's 72 bytes
    assert config.check_basic_auth("basic " + _basic("alice", "s3cret")[6:])


def test_a_cached_success_does_not_admit_another_password(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=4)).decode()
    config = WebConfig(path=tmp_path / "x.yml", basic_auth_users={"u": hashed})
    assert config.check_basic_auth(_basic("u", "right"))
    assert not config.check_basic_auth(_basic("u", "wrong"))
    assert config.check_basic_auth(_basic("u", "right"))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("tls_config: {}\n", "'tls_config'"),
        ("tls_server_config:\n  bogus: 1\n", "tls_server_config.bogus"),
        ("http_server_config:\n  nope: 1\n", "http_server_config.nope"),
        ("http_server_config:\n  headers:\n    Server: x\n", "headers.Server"),
        ("basic_auth_users:\n  alice: plaintext\n", "basic_auth_users.alice"),
        ("basic_auth_users: [a, b]\n", "basic_auth_users"),
        ("tls_server_config:\n  key_file: k\n", "cert_file"),
        ("- just\n- a list\n", "mapping"),
        ("tls_server_config: {cert_file: a\n", "invalid YAML"),
        ("tls_server_config:\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "cipher_suites"),
    ],
)
def test_invalid_files_name_the_file_and_field(tmp_path: Path, text: str, needle: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    assert str(path) in str(info.value)
    assert needle in str(info.value)


def _tls_yaml(cert: Path, key: Path, extra: str = "") -> str:
    return f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n{extra}"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("  client_auth_type: Sometimes\n", "client_auth_type"),
        ("  client_auth_type: RequireAnyClientCert\n", "client_auth_type"),
        ("  client_auth_type: RequireAndVerifyClientCert\n", "client_ca_file"),
        ("  min_version: TLS14\n", "min_version"),
    ],
)
def test_invalid_tls_settings(tmp_path: Path, extra: str, needle: str) -> None:
    cert, key = _self_signed(tmp_path)
    path = _write(tmp_path, _tls_yaml(cert, key, extra))
    with pytest.raises(ConfigError, match=needle) as info:
        load_web_config(path)
    assert str(path) in str(info.value)


def test_client_ca_without_auth_type_is_refused(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    path = _write(tmp_path, _tls_yaml(cert, key, f"  client_ca_file: {cert}\n"))
    with pytest.raises(ConfigError, match="client_auth_type"):
        load_web_config(path)


def test_missing_key_file_names_the_field(tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    path = _write(tmp_path, _tls_yaml(cert, tmp_path / "absent.key"))
    with pytest.raises(ConfigError, match=r"tls_server_config\.key_file") as info:
        load_web_config(path)
    assert str(path) in str(info.value) and "absent.key" in str(info.value)


def test_key_not_matching_certificate_is_a_config_error(tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, other_key = _self_signed(other)
    path = _write(tmp_path, _tls_yaml(cert, other_key))
    with pytest.raises(ConfigError, match="key_file") as info:
        load_web_config(path)
    assert str(path) in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent\.yml"):
        load_web_config(tmp_path / "absent.yml")
