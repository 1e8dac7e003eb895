"""What the fake servers (Rally, Confluence, the evidence sources) share: a threaded HTTP/1.1 server on 127.0.0.1
(port chosen by the OS) that hands each request to the fake's ``respond`` and writes its reply.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


class Reply:
    """One HTTP answer: status, payload (dict/list as JSON, str or bytes), type, headers.

    Status ``DROP`` answers nothing: the server closes the connection (a proxy that died).
    """

    DROP = 0

    def __init__(self, status: int, payload: Any, content_type: str = "application/json",
                 headers: dict | None = None) -> None:
        self.status = status
        self.payload = payload
        self.content_type = content_type
        self.headers = headers or {}

    def body(self) -> bytes:
        if isinstance(self.payload, bytes):
            return self.payload
        if isinstance(self.payload, str):
            return self.payload.encode("utf-8")
        return json.dumps(self.payload).encode("utf-8")


class FakeServer:
    """Life cycle of a fake: ``with Fake() as fake:`` serves in a background thread.

    Subclasses implement ``respond(method, raw_path, headers, body) -> Reply``. The most
    requests seen at the same time are kept in ``max_concurrent``.
    """

    def __init__(self) -> None:
        self.max_concurrent = 0
        self._in_flight = 0
        self._flight_lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._port: int | None = None

    def respond(self, method: str, raw_path: str, headers: Any, body: bytes) -> Reply:
        raise NotImplementedError

    def start(self) -> Self:
        """Start serving in a background thread."""
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        assert self._port is not None, f"{type(self).__name__} not started"
        return f"http://127.0.0.1:{self._port}"

    def _enter_request(self) -> None:
        with self._flight_lock:
            self._in_flight += 1
            self.max_concurrent = max(self.max_concurrent, self._in_flight)

    def _leave_request(self) -> None:
        with self._flight_lock:
            self._in_flight -= 1


class _Handler(BaseHTTPRequestHandler):
    owner: FakeServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY the client's delayed ACK
    # stalls every request by ~40 ms, which would swamp the latency the fakes add on purpose.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        fake = self.owner
        fake._enter_request()
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            reply = fake.respond(self.command, self.path, self.headers, body)
            if reply.status == Reply.DROP:
                self.close_connection = True
                return
            data = reply.body()
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout): nothing to answer
        finally:
            fake._leave_request()

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class FakeSource(FakeServer):
    """A fake evidence source (Splunk, Prometheus, PagerDuty, a plain web site): requests are
    counted and recorded, ``latency`` seconds are added to each, and faults are injected.

    Subclasses implement ``serve(method, path, query, headers, body) -> Reply`` (``query``
    maps each parameter to the list of its values, repeated ones included).
    """

    def __init__(self, latency: float = 0.0) -> None:
        super().__init__()
        self.latency = latency
        self.lock = threading.RLock()
        # (method, path, query, Authorization header or None)
        self.requests: list[tuple[str, str, dict[str, list[str]], str | None]] = []
        self._faults: list[dict[str, Any]] = []
        # Requests being answered at once, counted before the reply is written (so a client
        # cannot have its answer, and send the next request, while it is still counted).
        self.busy = 0
        self.busy_max = 0

    def serve(self, method: str, path: str, query: dict[str, list[str]], headers: Any,
              body: bytes) -> Reply:
        raise NotImplementedError

    def fail_next(self, status: int = 500, *, times: int = 1, path: str | None = None,
                  body: Any = None, content_type: str = "application/json",
                  headers: dict | None = None, hang: float = 0.0) -> None:
        """The next ``times`` requests (whose path starts with ``path``) get ``status`` and
        ``body`` instead of the answer (``status=200`` with a broken body: malformed JSON),
        after waiting ``hang`` seconds (longer than the client's timeout: a timeout)."""
        with self.lock:
            self._faults.append({"times": times, "status": status, "path": path,
                                 "body": {"fault": status} if body is None else body,
                                 "content_type": content_type, "headers": headers or {},
                                 "hang": hang})

    def count(self, path: str | None = None) -> int:
        """Requests received (whose path starts with ``path``), faults included."""
        with self.lock:
            return sum(1 for r in self.requests if path is None or r[1].startswith(path))

    def respond(self, method: str, raw_path: str, headers: Any, body: bytes) -> Reply:
        split = urlsplit(raw_path)
        query = parse_qs(split.query, keep_blank_values=True)
        with self.lock:
            self.requests.append((method, split.path, query, headers.get("Authorization")))
            fault = next((f for f in self._faults if f["times"] > 0 and
                          (f["path"] is None or split.path.startswith(f["path"]))), None)
            if fault is not None:
                fault["times"] -= 1
            self.busy += 1
            self.busy_max = max(self.busy_max, self.busy)
        try:
            if self.latency:
                time.sleep(self.latency)
            if fault is not None:
                if fault["hang"]:
                    time.sleep(fault["hang"])
                return Reply(fault["status"], fault["body"], fault["content_type"],
                             fault["headers"])
            return self.serve(method, split.path, query, headers, body)
        finally:
            with self.lock:
                self.busy -= 1


class Listener:
    """A bare TCP listener on 127.0.0.1 standing in for an HTTP proxy: keeps every byte it is
    sent (``received``) and answers 502, so a test can tell whether a request ever left."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.received = b""
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.received += conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()
