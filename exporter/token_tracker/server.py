"""The HTTP(S) server for ``/metrics``, the status page and ``/healthz``.

Built on ``http.server``: one daemon thread per connection, each with a socket
timeout, so a slow or stuck client only ever holds its own thread.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import re
import socket
import socketserver
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

from .webconfig import WebConfig

logger = logging.getLogger(__name__)

DEFAULT_PORT = 9464
#: Seconds a connection may sit idle (handshake, request, keep-alive) before it is dropped.
CONNECTION_TIMEOUT = 10.0
_ALLOW = "GET, HEAD"
_REALM = 'Basic realm="token-tracker"'
_TEXT = "text/plain; charset=utf-8"


class ExporterApp(Protocol):
    """What the server serves: metrics, the status page and health."""

    def render_metrics(self, accept: str | None) -> tuple[bytes, str]: ...

    def status_page(self) -> str: ...

    def health(self) -> tuple[bool, str]: ...


def parse_listen_address(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"``, ``"[::1]:9464"`` or ``":9464"`` (all interfaces) -> (host, port)."""
    flag = "--web.listen-address"
    match = re.fullmatch(r"(?:\[([^\]]*)\]|([^:\[\]]*)):(\d{1,5})", value)
    if match is None:
        raise ValueError(
            f"{flag} {value!r} is not HOST:PORT (examples: 127.0.0.1:9464, [::1]:9464, :9464)"
        )
    bracketed, plain, port_text = match.groups()
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"{flag} {value!r}: port {port} is out of range 0-65535")
    if bracketed is not None:
        if ":" not in bracketed:
            raise ValueError(f"{flag} {value!r}: brackets are only for IPv6 addresses")
        return bracketed, port
    return plain or "0.0.0.0", port


def _accepts_gzip(accept_encoding: str | None) -> bool:
    for item in (accept_encoding or "").split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() != "gzip":
            continue
        q = params.strip().lower().replace(" ", "")
        return not (q.startswith("q=") and _is_zero(q[2:]))
    return False


def _is_zero(text: str) -> bool:
    try:
        return float(text) == 0.0
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    """Routes one connection's requests to the app."""

    server: _HTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, as Prometheus scrapes expect
    server_version = "token-tracker-exporter"
    sys_version = ""
    timeout = CONNECTION_TIMEOUT

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        # A request body is never read, so the connection cannot be reused after one.
        if self.headers.get("Content-Length") or self.headers.get("Transfer-Encoding"):
            self.close_connection = True
        if self.command in ("GET", "HEAD"):
            return True
        # Answered here rather than through do_<METHOD> so every method, even an
        # unknown one, gets 405 instead of http.server's 501.
        self.close_connection = True
        if self._authorized():
            self._send(405, b"method not allowed\n", _TEXT, {"Allow": _ALLOW})
        return False

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._authorized():
            return
        path = urlsplit(self.path).path
        try:
            status, body, content_type, extra = self._route(path)
        except Exception:
            # Only the app's failure is caught here; errors while writing the response
            # (a client gone away) are left to the server's quiet handle_error.
            logger.exception("error serving %s %s", self.command, path)
            self.close_connection = True
            status, body, content_type, extra = 500, b"internal server error\n", _TEXT, {}
        self._send(status, body, content_type, extra)

    def _route(self, path: str) -> tuple[int, bytes, str, dict[str, str]]:
        app = self.server.app
        if path == "/metrics":
            body, content_type = app.render_metrics(self.headers.get("Accept"))
            extra = {"Vary": "Accept-Encoding"}
            if _accepts_gzip(self.headers.get("Accept-Encoding")):
                body = gzip.compress(body, compresslevel=6)
                extra["Content-Encoding"] = "gzip"
            return 200, body, content_type, extra
        if path == "/":
            # errors="replace": a stray lone surrogate must not turn the page into a 500.
            page = app.status_page().encode("utf-8", "replace")
            return 200, page, "text/html; charset=utf-8", {}
        if path == "/healthz":
            ok, text = app.health()
            body = (text if text.endswith("\n") else text + "\n").encode("utf-8", "replace")
            return (200 if ok else 503), body, _TEXT, {}
        return 404, b"not found\n", _TEXT, {}

    def _authorized(self) -> bool:
        config = self.server.web_config
        if config is None or config.check_basic_auth(self.headers.get("Authorization")):
            return True
        self._send(401, b"unauthorized\n", _TEXT, {"WWW-Authenticate": _REALM})
        return False

    def _send(
        self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**self.server.extra_headers, **(extra or {})}.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def log_error(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with TLS handshakes moved off the accept loop."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[Any, ...],
        family: socket.AddressFamily,
        app: ExporterApp,
        web_config: WebConfig | None,
    ) -> None:
        self.address_family = family
        self.app = app
        self.web_config = web_config
        self.extra_headers = dict(web_config.headers) if web_config else {}
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)
        ctx = web_config.ssl_context() if web_config else None
        if ctx is not None:
            # No handshake on accept: it runs in the connection's thread (finish_request),
            # so a client that connects and never speaks TLS cannot stall accept().
            self.socket = ctx.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a reverse DNS lookup that can hang.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        conn: socket.socket = request
        conn.settimeout(CONNECTION_TIMEOUT)
        with self._connections_lock:
            self._connections.add(conn)
        try:
            if isinstance(conn, ssl.SSLSocket):
                try:
                    conn.do_handshake()
                except (OSError, ValueError) as exc:
                    logger.debug("TLS handshake with %s failed: %s", client_address, exc)
                    return
            super().finish_request(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(conn)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Resets and timeouts from clients are routine; keep them out of stderr.
        logger.debug("error on connection from %s", client_address, exc_info=True)

    def close_connections(self) -> None:
        """Shut down every open connection so their threads end now, not at their timeout."""
        with self._connections_lock:
            conns = list(self._connections)
        for conn in conns:
            # The plain-socket shutdown: SSLSocket.shutdown would also drop its SSL
            # object under a thread that may be mid-handshake.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(conn, socket.SHUT_RDWR)


class ExporterServer:
    """Serves an :class:`ExporterApp` over HTTP, or HTTPS when the web config has TLS.

    The constructor binds the port and raises OSError when it cannot.
    """

    def __init__(
        self,
        app: ExporterApp,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        web_config: WebConfig | None = None,
    ) -> None:
        family, sockaddr = _resolve(host, port)
        self._httpd = _HTTPServer(sockaddr, family, app, web_config)
        self._tls = isinstance(self._httpd.socket, ssl.SSLSocket)
        self._lock = threading.Lock()
        self._serving = False
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound; the port is real even when 0 was asked for."""
        bound = self._httpd.server_address
        return str(bound[0]), int(bound[1])

    @property
    def url(self) -> str:
        """``http://host:port`` or ``https://host:port``, without a trailing slash."""
        host, port = self.address
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self._tls else 'http'}://{host}:{port}"

    def start(self) -> None:
        """Serve on a daemon thread and return."""
        thread = threading.Thread(
            target=self.serve_forever, name=f"token-tracker-http-{self.address[1]}", daemon=True
        )
        with self._lock:
            self._check_startable()
            self._serving = True
            self._thread = thread
        thread.start()

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`shutdown` is called from another."""
        with self._lock:
            if self._thread is None or threading.current_thread() is not self._thread:
                self._check_startable()
            self._serving = True
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        finally:
            with self._lock:
                self._serving = False

    def _check_startable(self) -> None:
        if self._closed:
            raise RuntimeError("the server has been shut down")
        if self._serving:
            raise RuntimeError("the server is already serving")

    def shutdown(self) -> None:
        """Stop serving, close the listening socket and open connections. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            serving = self._serving
        if serving:
            # Returns within one poll interval once the loop is running.
            self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=1.0)


def _resolve(host: str, port: int) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    if not infos:
        raise OSError(f"cannot resolve listen address {host!r}")
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr
