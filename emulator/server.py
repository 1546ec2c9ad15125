"""HTTPS transport and the in-process handle (`start_emulator` -> `RunningEmulator`).

Pipeline of an outer /api/data/v9.2 request: URL length (414) -> bearer token (401) -> seeded fault
(drop / 429 / 503) -> service protection (429) -> WebApi.handle -> sleep the modeled cost (scaled,
in this request's own thread, outside any lock) -> charge the cost to the user's execution window.
The token endpoint and /_emulator control endpoints are neither throttled nor fault-injected.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from emulator import data
from emulator.auth import Principal, TokenError, TokenService
from emulator.authorize import AuthorizeService
from emulator.batch import execute_batch
from emulator.cid import CidTables
from emulator.cid import control as cid_control
from emulator.config import EmulatorConfig, Faults
from emulator.faults import FaultInjector
from emulator.odata import CODE_REQUESTS, CODE_UNAUTHORIZED, CODE_UNAVAILABLE
from emulator.protection import ServiceProtection, Throttle, message_for
from emulator.state import State
from emulator.stats import Stats, theoretical_min_wall_time
from emulator.tls import make_certificate, server_context
from emulator.webapi import API_PREFIX, JSON_TYPE, ApiRequest, ApiResponse, WebApi, classify

API_ROOT = API_PREFIX.rstrip("/")


class Emulator:
    """Everything behind the socket: identity, state, API, limits, faults, stats."""

    def __init__(self, cfg: EmulatorConfig) -> None:
        self.cfg = cfg
        seed = cfg.seed
        self.tenant_id = cfg.tenant_id or data.derived_guid(seed, "tenant")
        self.client_id = cfg.client_id or data.derived_guid(seed, "client")
        self.client_secret = (
            cfg.client_secret or base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]
        )
        clients = {self.client_id: self.client_secret, **cfg.extra_clients}
        users = {cid: data.derived_guid(seed, f"user:{cid}") for cid in clients}
        self.tokens = TokenService(self.tenant_id, clients, users, cfg.token_lifetime_seconds)
        self.authorize = AuthorizeService(self.tokens, seed)  # delegated sign-in (users)
        self.state = State(cfg.contacts, cfg.inactive_fraction, seed, users[self.client_id])
        self.api = WebApi(
            cfg,
            self.state,
            organization_id=data.derived_guid(seed, "organization"),
            business_unit_id=data.derived_guid(seed, "business-unit"),
            batch_executor=execute_batch,
        )
        self.protection = ServiceProtection(cfg.limits, cfg.time_scale)
        self.faults = FaultInjector(cfg.faults)
        self.stats = Stats(cfg.log_size)
        self.api.on_batch_op = self.stats.record_batch_op
        self.cid = CidTables(cfg.cid, seed)
        self.api.cid = self.cid
        self.base_url = ""

    def bind_url(self, base_url: str) -> None:
        self.base_url = base_url
        self.api.service_root = base_url + API_PREFIX
        self.tokens.base_url = base_url
        self.tokens.authority_host = base_url

    def stats_snapshot(self) -> dict[str, Any]:
        """Counters, the most in flight per identity and the bound for the recorded work."""
        return {
            **self.stats.snapshot(),
            "max_concurrency_by_user": self.protection.max_in_flight(),
            "min_wall_time": self.min_wall_time(),
        }

    def min_wall_time(self, parallelism: int | None = None) -> dict[str, Any]:
        snap = self.stats.snapshot()
        p = parallelism or min(self.cfg.limits.concurrent_requests, self.cfg.dop_hint)
        return theoretical_min_wall_time(
            snap["limited_requests"],
            snap["total_cost_seconds"],
            self.cfg.limits,
            p,
            self.cfg.time_scale,
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "DataverseEmulator/1.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    disable_nagle_algorithm = True
    server: _TLSServer

    def log_message(self, format: str, *args: Any) -> None:
        return  # the emulator keeps its own request log

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PATCH = do_DELETE = do_PUT = do_GET

    # -- plumbing -----------------------------------------------------------------------------
    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.server.app.cfg.max_body_bytes:
            self._send_json(
                413, {"error": {"code": "0x80040203", "message": "Request body too large."}}
            )
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        hdrs = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        self._send(status, json.dumps(doc, separators=(",", ":")).encode(), hdrs)

    def _dispatch(self) -> None:
        app = self.server.app
        path = self.path.split("?", 1)[0]
        try:
            try:
                body = self._read_body()
            except ValueError:  # bad Content-Length or chunk size
                self.close_connection = True
                err = {
                    "error": {"code": "0x80040203", "message": "Malformed request body framing."}
                }
                self._send_json(400, err)
                return
            if body is None:
                return
            if path == API_ROOT or path.startswith(API_PREFIX):
                self._api(app, body)
            elif path.startswith("/_emulator/"):
                self._control(app, path[len("/_emulator/") :], body)
            else:
                self._identity(app, path, body)
        except (ConnectionError, ssl.SSLError, TimeoutError):
            self.close_connection = True

    # -- Entra-like endpoints -----------------------------------------------------------------
    def _identity(self, app: Emulator, path: str, body: bytes) -> None:
        parts = [p for p in path.split("/") if p]
        try:
            if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
                if self.command != "GET":
                    raise TokenError(405, "invalid_request", 900561, "Use GET.")
                doc = app.tokens.openid_configuration(parts[0])
                app.stats.record("openid-configuration", 200, method="GET", path=path)
                self._send_json(200, doc)
                return
            if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "authorize"]:
                query = self.path.split("?", 1)[1] if "?" in self.path else ""
                status, page, location = app.authorize.authorize(
                    parts[0], self.command, query, body
                )
                app.stats.record("authorize", status, method=self.command, path=path)
                headers = {"Cache-Control": "no-store"}
                if location:
                    self._send(302, b"", {**headers, "Location": location})
                else:
                    html_headers = {**headers, "Content-Type": "text/html; charset=utf-8"}
                    self._send(status, page.encode(), html_headers)
                return
            if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
                if self.command != "POST":
                    raise TokenError(
                        405, "invalid_request", 900561, "The token endpoint requires POST."
                    )
                basic = None
                auth = self.headers.get("Authorization", "")
                if auth.lower().startswith("basic "):
                    try:
                        raw = base64.b64decode(auth[6:]).decode()
                    except ValueError as exc:
                        raise TokenError(
                            401, "invalid_client", 7000215, "Malformed Basic credentials."
                        ) from exc
                    cid, _, secret = raw.partition(":")
                    basic = (unquote(cid), unquote(secret))
                doc = self._token(app, parts[0], body, basic)
                app.stats.record("token", 200, method="POST", path=path)
                self._send_json(200, doc, {"Cache-Control": "no-store", "Pragma": "no-cache"})
                return
            self._send_json(
                404, {"error": "not_found", "error_description": f"No endpoint at {path}"}
            )
        except TokenError as err:
            app.stats.record("token", err.status, method=self.command, path=path)
            self._send_json(err.status, err.body(), {"Cache-Control": "no-store"})

    @staticmethod
    def _token(
        app: Emulator, tenant: str, body: bytes, basic: tuple[str, str] | None
    ) -> dict[str, Any]:
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") in ("authorization_code", "refresh_token"):
            app.tokens._check_tenant(tenant)
            client_id = form.get("client_id") or (basic[0] if basic else "")
            secret = form.get("client_secret") or (basic[1] if basic else "")
            return app.authorize.token(form, client_id, secret)
        return app.tokens.issue(tenant, body, basic)

    # -- the Web API --------------------------------------------------------------------------
    def _api(self, app: Emulator, body: bytes) -> None:
        target = self.path[len(API_PREFIX) :] if self.path.startswith(API_PREFIX) else ""
        kind = classify(self.command, unquote(target.split("?", 1)[0]))
        request_id = str(uuid.uuid4())
        base_headers = {
            "REQ_ID": request_id,
            "x-ms-service-request-id": request_id,
            "OData-Version": "4.0",
            "x-ms-dop-hint": str(app.cfg.dop_hint),
        }
        if len(self.path) > app.cfg.max_url_length:
            app.stats.record(kind, 414, method=self.command, path=self.path)
            msg = f"The request URL exceeds the maximum length of {app.cfg.max_url_length} chars."
            self._send_json(414, {"error": {"code": "0x80040203", "message": msg}}, base_headers)
            return
        try:
            principal = app.tokens.validate(self.headers.get("Authorization"))
        except PermissionError as exc:
            app.stats.record(kind, 401, method=self.command, path=self.path)
            headers = {**base_headers, "WWW-Authenticate": app.tokens.challenge()}
            self._send_json(
                401, {"error": {"code": CODE_UNAUTHORIZED, "message": str(exc)}}, headers
            )
            return
        user = principal.client_id
        fault = app.faults.draw()
        if fault == "drop":
            app.stats.record(kind, 0, user=user, method=self.command, path=self.path, fault="drop")
            self.close_connection = True  # close without writing a response
            return
        if fault == "throttle":
            ra = app.faults.faults.retry_after_seconds
            app.protection.block(user, ra)
            err = {
                "error": {
                    "code": CODE_REQUESTS,
                    "message": message_for(CODE_REQUESTS, app.cfg.limits),
                }
            }
            app.stats.record(
                kind,
                429,
                user=user,
                method=self.command,
                path=self.path,
                throttle_code=CODE_REQUESTS,
                fault="throttle",
            )
            self._send_json(429, err, {**base_headers, "Retry-After": str(ra)})
            return
        if fault == "unavailable":
            app.stats.record(
                kind, 503, user=user, method=self.command, path=self.path, fault="unavailable"
            )
            err = {
                "error": {
                    "code": CODE_UNAVAILABLE,
                    "message": "The service is temporarily unavailable.",
                }
            }
            self._send_json(503, err, base_headers)
            return
        throttle = app.protection.admit(user)
        if throttle is not None:
            self._throttled(app, kind, user, throttle, base_headers)
            return
        app.stats.enter()
        started = time.monotonic()
        wall_cost = 0.0
        try:
            resp = self._execute(app, principal, target, body)
            wall_cost = resp.cost * app.cfg.time_scale
            remaining = wall_cost - (time.monotonic() - started)
            if remaining > 0:
                time.sleep(remaining)  # this request's own thread: other requests keep running
        finally:
            app.stats.leave()
            app.protection.release(user, wall_cost)
        left_requests, left_ms = app.protection.remaining(user)
        headers = {
            **base_headers,
            **resp.headers,
            "x-ms-ratelimit-burst-remaining-xrm-requests": str(left_requests),
            "x-ms-ratelimit-time-remaining-xrm-requests": f"{left_ms:.2f}",
        }
        app.stats.record(
            resp.kind,
            resp.status,
            user=user,
            method=self.command,
            path=self.path,
            cost=resp.cost,
            added=resp.added,
            removed=resp.removed,
            rows=resp.rows,
            limited=True,
        )
        if isinstance(resp.body, bytes):
            payload = resp.body
        elif resp.body is None:
            payload = b""
            headers.pop("Content-Type", None)
        else:
            payload = json.dumps(resp.body, separators=(",", ":")).encode()
            headers.setdefault("Content-Type", JSON_TYPE)
        self._send(resp.status, payload, headers)

    def _execute(
        self, app: Emulator, principal: Principal, target: str, body: bytes
    ) -> ApiResponse:
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            return app.api.handle(ApiRequest(self.command, target, headers, body, principal))
        except Exception as exc:  # an emulator bug: answer 500 and say so, keep serving
            traceback.print_exc(file=sys.stderr)
            msg = f"Emulator internal error: {exc!r}"
            kind = classify(self.command, unquote(target.split("?", 1)[0]))
            cost = app.cfg.costs.base_ms / 1000
            return ApiResponse(
                500, kind, {"error": {"code": CODE_UNAVAILABLE, "message": msg}}, cost=cost
            )

    def _throttled(
        self, app: Emulator, kind: str, user: str, throttle: Throttle, base_headers: dict[str, str]
    ) -> None:
        app.stats.record(
            kind,
            429,
            user=user,
            method=self.command,
            path=self.path,
            throttle_code=throttle.code,
            violation=throttle.violation,
            since_block=throttle.since_block,
        )
        err = {"error": {"code": throttle.code, "message": throttle.message}}
        self._send_json(429, err, {**base_headers, "Retry-After": str(throttle.retry_after)})

    # -- /_emulator control endpoints (standalone mode; loopback only) -------------------------
    def _control(self, app: Emulator, path: str, body: bytes) -> None:
        if self.client_address[0] != "127.0.0.1":
            self._send_json(403, {"error": "control endpoints are loopback-only"})
            return
        m = self.command
        try:
            doc: Any = json.loads(body) if body else {}
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            self._send_json(400, {"error": "the body must be a JSON object"})
            return
        parts = path.strip("/").split("/")
        if m == "GET" and parts == ["stats"]:
            self._send_json(200, app.stats_snapshot())
        elif m == "GET" and parts == ["log"]:
            self._send_json(200, {"value": app.stats.recent()})
        elif m == "POST" and parts == ["reset-stats"]:
            app.stats.reset()
            app.protection.reset_peaks()
            if doc.get("throttling"):
                app.protection.reset()
            self._send_json(200, {"ok": True})
        elif m == "POST" and parts == ["faults"]:
            try:
                app.faults.set(replace(Faults(), **doc))
            except (TypeError, ValueError) as exc:
                self._send_json(400, {"error": str(exc)})
                return
            self._send_json(200, {"ok": True})
        elif (
            m == "POST"
            and len(parts) == 3
            and parts[0] == "users"
            and parts[1] in (app.authorize.users)
        ):
            if parts[2] == "revoke-sessions":
                self._send_json(200, {"revoked": app.authorize.revoke_sessions(parts[1])})
            elif parts[2] == "claims-challenge":
                app.authorize.demand_claims(parts[1], bool(doc.get("on", True)))
                self._send_json(200, {"ok": True})
            else:
                self._send_json(404, {"error": f"unknown user hook {parts[2]}"})
        elif parts[0] == "cid":
            status, answer = cid_control(app.cid, m, parts[1:], doc)
            self._send_json(status, answer)
        elif m == "POST" and parts == ["expire-tokens"]:
            self._send_json(200, {"expired": app.tokens.expire_tokens()})
        elif m == "GET" and len(parts) == 3 and parts[0] == "lists" and parts[2] == "members":
            if app.state.get_list(parts[1]) is None:
                self._send_json(404, {"error": "no such list"})
                return
            self._send_json(200, {"value": sorted(app.state.list_members(parts[1]))})
        elif m == "GET" and len(parts) == 2 and parts[0] == "lists":
            row = app.state.get_list(parts[1])
            self._send_json(200 if row else 404, row or {"error": "no such list"})
        elif (
            m == "POST" and len(parts) == 3 and parts[0] == "contacts" and parts[2] == "deactivate"
        ):
            app.state.deactivate_contact(parts[1])
            self._send_json(200, {"ok": True})
        elif m == "DELETE" and len(parts) == 2 and parts[0] == "contacts":
            self._send_json(200, {"deleted": app.state.delete_contact(parts[1])})
        else:
            self._send_json(404, {"error": f"unknown control endpoint {m} /_emulator/{path}"})


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], ctx: ssl.SSLContext, app: Emulator) -> None:
        super().__init__(address, _Handler)
        self.ctx = ctx
        self.app = app
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS handshake happens here, in the connection's own thread, not in the accept loop.
        request.settimeout(30)
        try:
            conn = self.ctx.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        with self._open_lock:
            self._open.add(conn)
        try:
            self.RequestHandlerClass(conn, client_address, self)  # type: ignore[arg-type]
        except (OSError, ssl.SSLError):
            pass
        finally:
            with self._open_lock:
                self._open.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def close_all(self) -> None:
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class RunningEmulator:
    """A started emulator: URLs, identity, CA file, inspection and control (Contract 1)."""

    def __init__(
        self,
        app: Emulator,
        server: _TLSServer,
        thread: threading.Thread,
        tmpdir: Path,
        ca_file: Path,
    ):
        self._app = app
        self._server = server
        self._thread = thread
        self._tmpdir = tmpdir
        self.config = app.cfg
        host, port = server.server_address[:2]
        self.port: int = int(port)
        host_text = host.decode() if isinstance(host, bytes) else str(host)
        self.base_url = f"https://{host_text}:{self.port}"
        self.authority_host = self.base_url
        self.api_url = self.base_url + API_PREFIX
        self.tenant_id = app.tenant_id
        self.client_id = app.client_id
        self.client_secret = app.client_secret
        self.ca_file = str(ca_file)
        self.state = app.state
        self.cid = app.cid  # Customer Insights tables: change membership between runs

    @property
    def authority(self) -> str:
        return f"{self.authority_host}/{self.tenant_id}"

    @property
    def scope(self) -> str:
        return f"{self.base_url}/.default"

    def contact_id(self, i: int) -> str:
        return data.contact_id(i, self.config.seed)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only the emulator's certificate (httpx ``verify=``)."""
        return ssl.create_default_context(cafile=self.ca_file)

    def is_inactive(self, i: int) -> bool:
        """Initial state of synthetic contact i (ignores later deactivate_contact calls)."""
        return data.is_inactive(i, self.config.seed, self.config.inactive_fraction)

    def stats(self) -> dict[str, Any]:
        return self._app.stats_snapshot()

    def min_wall_time(self, parallelism: int | None = None) -> dict[str, Any]:
        return self._app.min_wall_time(parallelism)

    def request_log(self, limit: int = 1000) -> list[dict[str, Any]]:
        return self._app.stats.recent(limit)

    def reset_stats(self, throttling: bool = False) -> None:
        """Zero the counters; with throttling=True also clear every user's limit windows."""
        self._app.stats.reset()
        self._app.protection.reset_peaks()
        if throttling:
            self._app.protection.reset()

    def set_faults(
        self,
        throttle: float = 0.0,
        unavailable: float = 0.0,
        drop: float = 0.0,
        seed: int = 0,
        retry_after_seconds: int = 1,
    ) -> None:
        self._app.faults.set(Faults(throttle, unavailable, drop, seed, retry_after_seconds))

    def expire_tokens(self) -> int:
        return self._app.tokens.expire_tokens()

    @property
    def authorize(self) -> AuthorizeService:
        """Delegated sign-in: seeded users, revoke_sessions(user), demand_claims(user)."""
        return self._app.authorize

    def connection_info(self) -> dict[str, str]:
        return {
            "base_url": self.base_url,
            "authority_host": self.authority_host,
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "ca_file": self.ca_file,
        }

    def stop(self) -> None:
        self._server.shutdown()
        self._server.close_all()
        self._server.server_close()
        self._thread.join(timeout=5)
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_emulator(
    cfg: EmulatorConfig | None = None, port: int = 0, host: str = "127.0.0.1"
) -> RunningEmulator:
    """Start on loopback in background threads; returns once the socket is listening."""
    if host not in ("127.0.0.1", "localhost"):
        raise ValueError("the emulator only binds to loopback")
    cfg = cfg or EmulatorConfig()
    app = Emulator(cfg)
    tmpdir = Path(tempfile.mkdtemp(prefix="dataverse-emulator-"))
    cert, key = make_certificate(tmpdir)
    server = _TLSServer(("127.0.0.1", port), server_context(cert, key), app)
    app.bind_url(f"https://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.name = f"dataverse-emulator:{server.server_address[1]}"
    thread.start()
    return RunningEmulator(app, server, thread, tmpdir, cert)
