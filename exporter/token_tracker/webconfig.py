"""The Prometheus exporter-toolkit web config file: TLS, client certificates, basic auth.

The format is the one ``--web.config.file`` takes in Prometheus exporters
(https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md);
the parts Python's ``ssl`` module cannot express are refused rather than ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from .errors import ConfigError

_TOP_LEVEL_KEYS = frozenset({"tls_server_config", "http_server_config", "basic_auth_users"})
_UNSUPPORTED_TLS_KEYS = frozenset(
    {"cert", "key", "client_ca", "cipher_suites", "curve_preferences", "client_allowed_sans"}
)
_TLS_KEYS = frozenset(
    {
        "cert_file",
        "key_file",
        "client_ca_file",
        "client_auth_type",
        "min_version",
        "max_version",
        "prefer_server_cipher_suites",
    }
    | _UNSUPPORTED_TLS_KEYS
)
_HTTP_KEYS = frozenset({"http2", "headers"})
# The response headers exporter-toolkit lets a config set; anything else is refused.
_ALLOWED_HEADERS = {
    h.lower(): h
    for h in (
        "Strict-Transport-Security",
        "X-Content-Type-Options",
        "X-Frame-Options",
        "X-XSS-Protection",
        "Content-Security-Policy",
    )
}
_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)
_VERIFYING_AUTH_TYPES = ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
_BCRYPT_HASH = re.compile(r"\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}")
# bcrypt ignores (and the bcrypt package refuses) password bytes past the 72nd.
_BCRYPT_MAX_PASSWORD = 72


@dataclass(frozen=True)
class TLSServerConfig:
    """The ``tls_server_config`` section, with paths already resolved."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str | None = None


@dataclass(frozen=True)
class WebConfig:
    """A parsed web config file; ``tls`` is None when it serves plain HTTP."""

    path: Path
    tls: TLSServerConfig | None = None
    basic_auth_users: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    # Runtime state, not configuration: excluded from ==, repr and hash.
    _dummy_hash: bytes = field(init=False, default=b"", repr=False, compare=False)
    _cache_key: bytes = field(
        default_factory=lambda: secrets.token_bytes(32), repr=False, compare=False
    )
    _auth_cache: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)
    _bcrypt_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.basic_auth_users:
            # Unknown users are checked against this hash so they are not faster to reject;
            # it has the cost of the dearest real hash.
            rounds = max(_bcrypt_cost(h) for h in self.basic_auth_users.values())
            dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=rounds))
            object.__setattr__(self, "_dummy_hash", dummy)

    @property
    def auth_required(self) -> bool:
        """True when ``basic_auth_users`` is non-empty."""
        return bool(self.basic_auth_users)

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server-side SSLContext for ``tls_server_config``, or None for plain HTTP."""
        tls = self.tls
        if tls is None:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _TLS_VERSIONS[tls.min_version]
        if tls.max_version is not None:
            ctx.maximum_version = _TLS_VERSIONS[tls.max_version]
        try:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{self.path}: tls_server_config.cert_file {str(tls.cert_file)!r} / "
                f"key_file {str(tls.key_file)!r}: cannot load certificate and key: {exc}"
            ) from exc
        if tls.client_auth_type in _VERIFYING_AUTH_TYPES:
            assert tls.client_ca_file is not None  # enforced by load_web_config
            try:
                ctx.load_verify_locations(cafile=tls.client_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"{self.path}: tls_server_config.client_ca_file "
                    f"{str(tls.client_ca_file)!r}: cannot load: {exc}"
                ) from exc
            ctx.verify_mode = (
                ssl.CERT_REQUIRED
                if tls.client_auth_type == "RequireAndVerifyClientCert"
                else ssl.CERT_OPTIONAL
            )
        else:
            # RequestClientCert asks for a certificate it never checks or uses, so not
            # asking at all is equivalent for an exporter.
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def check_basic_auth(self, header_value: str | None) -> bool:
        """Check an ``Authorization`` header; True when auth is off or the credentials match."""
        if not self.basic_auth_users:
            return True
        credentials = _parse_basic(header_value)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self.basic_auth_users.get(user)
        # HMAC with a per-process key: the cache never holds anything password-equivalent.
        digest = hmac.new(
            self._cache_key,
            b"\0".join((user.encode(), (hashed or "").encode(), password)),
            hashlib.sha256,
        ).digest()
        cached = self._auth_cache.get(user)
        if cached is not None and hmac.compare_digest(cached, digest):
            return True
        if len(password) > _BCRYPT_MAX_PASSWORD:
            return False
        # Unknown users still pay for one bcrypt check so timing does not reveal them;
        # the lock keeps a flood of bad guesses to one core, as exporter-toolkit does.
        with self._bcrypt_lock:
            try:
                ok = bcrypt.checkpw(password, (hashed or "").encode() or self._dummy_hash)
            except ValueError:
                ok = False
        if ok and hashed is not None:
            self._auth_cache[user] = digest
            return True
        return False


def _bcrypt_cost(hashed: str) -> int:
    match = _BCRYPT_HASH.fullmatch(hashed)
    if match is None:
        raise ValueError(f"not a bcrypt hash: {hashed!r}")
    return int(match.group(1))


def _parse_basic(header_value: str | None) -> tuple[str, bytes] | None:
    if not header_value:
        return None
    scheme, _, encoded = header_value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user_bytes, sep, password = raw.partition(b":")
    if not sep:
        return None
    try:
        return user_bytes.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read and validate a web config file; raise ConfigError naming the file and field."""
    config_path = Path(path)
    try:
        text = config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{config_path}: cannot read web config file: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_path}: invalid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{config_path}: the top level must be a mapping")
    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            raise ConfigError(
                f"{config_path}: unknown field {key!r} (known: "
                f"{', '.join(sorted(_TOP_LEVEL_KEYS))})"
            )
    tls = _parse_tls(config_path, data.get("tls_server_config"))
    headers = _parse_http(config_path, data.get("http_server_config"))
    users = _parse_users(config_path, data.get("basic_auth_users"))
    config = WebConfig(path=config_path, tls=tls, basic_auth_users=users, headers=headers)
    config.ssl_context()  # load certificates now so a bad file fails at startup
    return config


def _mapping(config_path: Path, value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{config_path}: {name} must be a mapping")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"{config_path}: {name}: keys must be strings, got {key!r}")
    return value


def _string(config_path: Path, section: dict[str, Any], name: str, prefix: str) -> str | None:
    value = section.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{config_path}: {prefix}.{name} must be a string")
    return value


def _existing_file(config_path: Path, value: str, field_name: str) -> Path:
    # exporter-toolkit resolves relative paths against the config file's directory.
    resolved = (config_path.parent / Path(value).expanduser()).resolve()
    if not resolved.is_file():
        raise ConfigError(
            f"{config_path}: tls_server_config.{field_name}: file {value!r} "
            f"({resolved}) does not exist or is not a regular file"
        )
    return resolved


def _parse_tls(config_path: Path, raw: Any) -> TLSServerConfig | None:
    prefix = "tls_server_config"
    section = _mapping(config_path, raw, prefix)
    for name, value in section.items():
        if name not in _TLS_KEYS:
            raise ConfigError(f"{config_path}: unknown field {prefix}.{name}")
        if name in _UNSUPPORTED_TLS_KEYS and value not in (None, "", [], {}):
            raise ConfigError(f"{config_path}: {prefix}.{name} is not supported by this exporter")
    cert = _string(config_path, section, "cert_file", prefix)
    key = _string(config_path, section, "key_file", prefix)
    client_ca = _string(config_path, section, "client_ca_file", prefix)
    auth_type = _string(config_path, section, "client_auth_type", prefix)
    if cert is None and key is None and client_ca is None and auth_type is None:
        return None  # an empty section means plain HTTP, as in exporter-toolkit
    if cert is None:
        raise ConfigError(f"{config_path}: {prefix}.cert_file is missing")
    if key is None:
        raise ConfigError(f"{config_path}: {prefix}.key_file is missing")
    auth_type = auth_type or "NoClientCert"
    if auth_type not in CLIENT_AUTH_TYPES:
        raise ConfigError(
            f"{config_path}: {prefix}.client_auth_type {auth_type!r} is invalid "
            f"(one of {', '.join(CLIENT_AUTH_TYPES)})"
        )
    if auth_type == "RequireAnyClientCert":
        raise ConfigError(
            f"{config_path}: {prefix}.client_auth_type RequireAnyClientCert is not supported "
            "(Python's ssl cannot require a certificate without verifying it); use "
            "RequireAndVerifyClientCert with client_ca_file"
        )
    if client_ca is not None and auth_type == "NoClientCert":
        raise ConfigError(
            f"{config_path}: {prefix}.client_ca_file is set but client_auth_type is "
            "NoClientCert; set a client_auth_type"
        )
    if client_ca is None and auth_type in _VERIFYING_AUTH_TYPES:
        raise ConfigError(
            f"{config_path}: {prefix}.client_ca_file is required with client_auth_type {auth_type}"
        )
    versions = {}
    for name in ("min_version", "max_version"):
        value = _string(config_path, section, name, prefix)
        if value is not None and value not in _TLS_VERSIONS:
            raise ConfigError(
                f"{config_path}: {prefix}.{name} {value!r} is invalid "
                f"(one of {', '.join(_TLS_VERSIONS)})"
            )
        versions[name] = value
    return TLSServerConfig(
        cert_file=_existing_file(config_path, cert, "cert_file"),
        key_file=_existing_file(config_path, key, "key_file"),
        client_ca_file=(
            _existing_file(config_path, client_ca, "client_ca_file") if client_ca else None
        ),
        client_auth_type=auth_type,
        min_version=versions["min_version"] or "TLS12",
        max_version=versions["max_version"],
    )


def _parse_http(config_path: Path, raw: Any) -> dict[str, str]:
    prefix = "http_server_config"
    section = _mapping(config_path, raw, prefix)
    for key in section:
        if key not in _HTTP_KEYS:
            raise ConfigError(f"{config_path}: unknown field {prefix}.{key}")
    # http2 is accepted and ignored: this server speaks HTTP/1.1 only.
    headers: dict[str, str] = {}
    for name, value in _mapping(config_path, section.get("headers"), f"{prefix}.headers").items():
        canonical = _ALLOWED_HEADERS.get(name.lower())
        if canonical is None:
            raise ConfigError(
                f"{config_path}: {prefix}.headers.{name} is not allowed "
                f"(one of {', '.join(_ALLOWED_HEADERS.values())})"
            )
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ConfigError(
                f"{config_path}: {prefix}.headers.{name} must be a single-line string"
            )
        headers[canonical] = value
    return headers


def _parse_users(config_path: Path, raw: Any) -> dict[str, str]:
    prefix = "basic_auth_users"
    users: dict[str, str] = {}
    for user, hashed in _mapping(config_path, raw, prefix).items():
        if ":" in user or not user:
            raise ConfigError(
                f"{config_path}: {prefix}: user name {user!r} must be non-empty without ':'"
            )
        if not isinstance(hashed, str) or not _BCRYPT_HASH.fullmatch(hashed):
            raise ConfigError(f"{config_path}: {prefix}.{user}: not a bcrypt hash")
        users[user] = hashed
    return users
