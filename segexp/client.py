"""A small typed client for the app's HTTP API (used by the operator CLI and the demo)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

FINAL_STATUSES = {"succeeded", "partially-succeeded", "failed", "skipped", "canceled"}


class ApiError(Exception):
    """The API answered with a problem (RFC 9457); carries its title, detail and status."""

    def __init__(self, response: httpx.Response) -> None:
        try:
            problem: Any = response.json()
        except ValueError:
            problem = {"title": response.reason_phrase, "detail": response.text[:300]}
        self.status = response.status_code
        self.problem: dict[str, Any] = (
            problem if isinstance(problem, dict) else {"detail": str(problem)}
        )
        detail = self.problem.get("detail") or ""
        fields = "; ".join(
            f"{e.get('field')}: {e.get('message')}" for e in self.problem.get("errors") or []
        )
        super().__init__(
            f"{self.status} {self.problem.get('title', '')}: {detail}"
            + (f" ({fields})" if fields else "")
        )


class ApiClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=60.0, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ApiError(response)
        return response

    # --- data -----------------------------------------------------------------------------

    def put_segment(self, name: str, members: list[str] | Path) -> dict[str, Any]:
        path = f"/api/segments/{quote(name, safe='')}"
        if isinstance(members, Path):
            return self._call("PUT", path, **_file_body(members)).json()
        return self._call("PUT", path, json={"members": members}).json()

    def upsert_customers(self, rows: list[dict[str, Any]] | Path) -> dict[str, Any]:
        if isinstance(rows, Path):
            return self._call("POST", "/api/customers", **_file_body(rows)).json()
        return self._call("POST", "/api/customers", json=rows).json()

    def start_customer_import(
        self, rows: list[dict[str, Any]] | Path, *, merge: bool = False
    ) -> dict[str, Any]:
        """Queue a background import (large files): 202 and the import record."""
        params = {"merge": "true"} if merge else {}
        body = _file_body(rows) if isinstance(rows, Path) else {"json": rows}
        return self._call("POST", "/api/customer-imports", params=params, **body).json()

    def customer_import(self, import_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/customer-imports/{quote(import_id, safe='')}").json()

    def customer_imports(self, *, limit: int = 20) -> list[dict[str, Any]]:
        answer = self._call("GET", "/api/customer-imports", params={"limit": limit}).json()
        return list(answer["items"])

    def upsert_customers_csv(self, data: bytes) -> dict[str, Any]:
        return self._call(
            "POST", "/api/customers", content=data, headers={"Content-Type": "text/csv"}
        ).json()

    def segments(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/segments").json()["items"]

    def source_segments(self, kind: str, connection_id: str | None = None) -> list[dict[str, Any]]:
        """The segments a source offers (name, members)."""
        params = {"connectionId": connection_id} if connection_id else {}
        return self._call("GET", f"/api/sources/{kind}/segments", params=params).json()["items"]

    # --- configuration ---------------------------------------------------------------------

    def create_connection(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/api/connections", json=body).json()

    def test_connection(self, connection_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/connections/{connection_id}/test").json()

    def connections(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/connections").json()["items"]

    def create_export(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/api/exports", json=body).json()

    def exports(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/exports").json()["items"]

    # --- runs ------------------------------------------------------------------------------

    def start_run(self, export_id: str, *, dry_run: bool = False) -> dict[str, Any]:
        params = {"dryRun": "true"} if dry_run else None
        return self._call("POST", f"/api/exports/{export_id}/runs", params=params).json()

    def run_all(self) -> list[dict[str, Any]]:
        return self._call("POST", "/api/runs").json()["items"]

    def run(self, export_id: str, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/exports/{export_id}/runs/{run_id}").json()

    def cancel_run(self, export_id: str, run_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/exports/{export_id}/runs/{run_id}/cancel").json()

    def runs(self, export_id: str, *, limit: int = 20) -> list[dict[str, Any]]:
        page = self._call("GET", f"/api/exports/{export_id}/runs", params={"limit": limit})
        return page.json()["items"]

    def rejections(self, export_id: str, run_id: str) -> Iterator[dict[str, Any]]:
        url: str | None = f"/api/exports/{export_id}/runs/{run_id}/rejections"
        while url:
            page = self._call("GET", url).json()
            yield from page["items"]
            url = page.get("nextLink")

    def rejections_csv(self, export_id: str, run_id: str) -> str:
        path = f"/api/exports/{export_id}/runs/{run_id}/rejections"
        return self._call("GET", path, headers={"Accept": "text/csv"}).text


def _file_body(path: Path) -> dict[str, Any]:
    content_type = "text/csv" if path.suffix.lower() == ".csv" else "application/json"
    return {"content": path.read_bytes(), "headers": {"Content-Type": content_type}}
