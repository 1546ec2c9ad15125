"""Memory of the API process when an anonymous caller sends a large body (issue 11 #7).

    python -m bench.anonymous_body [--megabytes 60] [--route /api/connections]

Serves function_app:api with uvicorn (its own process, EasyAuth mode, no store is ever built),
sends one body without any identity over a raw socket, and prints the server's resident memory
(VmRSS) and peak (VmHWM) from /proc before and after, the status it answered and how many bytes
it accepted before answering. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from devtools.azurite import REPO, free_port, wait_for_port

CHUNK = 256 * 1024


def memory_mb(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def json_array(size: int) -> memoryview:
    """A valid JSON array of ``size`` bytes (``size`` rounded up to odd): [1,1,...,1]."""
    count = max(1, (size - 1) // 2)
    return memoryview(b"[" + b"1," * (count - 1) + b"1]")


def send_anonymous(port: int, method: str, route: str, size: int) -> tuple[str, int]:
    """Send headers and up to ``size`` bytes; stop when the server answers or closes."""
    sent = 0
    body = json_array(size)
    size = len(body)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        head = (
            f"{method} {route} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n"
        )
        sock.sendall(head.encode())
        sock.setblocking(False)
        answer = b""
        while sent < size:
            try:
                answer += sock.recv(65536)
                if answer:
                    break
            except BlockingIOError:
                pass
            try:
                sent += sock.send(body[sent : sent + CHUNK])
            except BlockingIOError:
                time.sleep(0.001)
            except OSError:  # the server closed the connection: it refused the body
                break
        sock.setblocking(True)
        try:
            while b"\r\n" not in answer:
                more = sock.recv(65536)
                if not more:
                    break
                answer += more
        except OSError:
            pass
    return answer.split(b"\r\n", 1)[0].decode(errors="replace"), sent


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.anonymous_body")
    parser.add_argument("--megabytes", type=int, default=60)
    parser.add_argument("--route", default="/api/connections")
    parser.add_argument("--method", default="POST")
    args = parser.parse_args()
    port = free_port()
    env = {
        **os.environ,
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",  # never used: no store is built
        "AUTH_MODE": "easyauth",
        "WEBSITE_AUTH_ENABLED": "true",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "function_app:api", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, None)
        before = memory_mb(server.pid)
        status, sent = send_anonymous(port, args.method, args.route, args.megabytes * 1024 * 1024)
        after = memory_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(
        "| route | body MB | answer | bytes sent before the answer "
        "| RSS before MB | RSS after MB | peak RSS MB |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    print(
        f"| {args.method} {args.route} | {args.megabytes} | {status} | {sent:,} "
        f"| {before['VmRSS']:.0f} | {after['VmRSS']:.0f} | {after['VmHWM']:.0f} |"
    )


if __name__ == "__main__":
    main()
