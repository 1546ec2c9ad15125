"""A loopback HTTP forwarder in front of Azurite's table endpoint that can lose answers.

It forwards every request to Azurite unchanged; for requests that match a rule it lets storage
apply the request and then closes the client's connection without answering, which is what a
reset connection or a storage restart looks like to the client (the client's retry then meets
the state the lost request left behind).
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support import free_port

Rule = Callable[[str, str], bool]  # (method, path) -> lose the answer to this request?
_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.lost: list[tuple[str, str]] = []  # requests applied upstream whose answer was lost
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def lose_answer_once(self, rule: Rule) -> None:
        """Lose the answer to the next request that matches (once)."""
        with self._lock:
            self._rules.append(rule)

    def losing(self, method: str, path: str) -> bool:
        with self._lock:
            for rule in self._rules:
                if rule(method, path):
                    self._rules.remove(rule)
                    self.lost.append((method, path))
                    return True
        return False


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
            finally:
                upstream.close()
            if proxy.losing(self.command, self.path):
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.send_response(answer.status, answer.reason)
            for key, value in answer.getheaders():
                if key.lower() not in _HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_MERGE = do_HEAD = forward

    return Forward
