"""A small hand-written fake of the Dataverse Web API for unit tests (httpx.MockTransport).

It implements only what the Sales module sends, strictly enough to catch wrong requests: required
headers, the `In` validation query, paging by `$skiptoken`, `$batch` (multipart, CRLF), and the
two list actions. Integration tests use the real emulator instead.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import httpx

from shared.sales.batch import parse_batch

BASE = "https://org.crm.dynamics.com"
API = "/api/data/v9.2/"


def guid(i: int) -> str:
    return str(uuid.UUID(int=0xC0FFEE << 96 | i))


@dataclass
class FakeList:
    id: str
    name: str
    createdfromcode: int = 2
    type: bool = False
    statecode: int = 0
    lockstatus: bool = False
    members: set[str] = field(default_factory=set)
    description: str | None = None


@dataclass
class FakeDataverse:
    contacts: dict[str, int] = field(default_factory=dict)  # contact id -> statecode
    lists: dict[str, FakeList] = field(default_factory=dict)
    page_size: int = 5000
    dop_hint: int | None = 4
    dop_on_every_response: bool = False
    name_culprit: bool = False  # whether a refused add names the missing contact
    max_members: int | None = None  # members per list action the service accepts
    max_members_message: str = (
        "The number of members ({n}) exceeds the maximum of {cap} allowed in one request."
    )
    action_sizes: list[int] = field(default_factory=list)  # members sent per list action
    descending_pages: bool = False  # pages sorted inside, but the last page first
    requests: list[httpx.Request] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    # hook(request, kind) -> response or None: lets a test inject faults per request
    hook: Callable[[httpx.Request, str], httpx.Response | None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def with_contacts(cls, n: int, inactive: set[int] | None = None) -> FakeDataverse:
        inactive = inactive or set()
        return cls(contacts={guid(i): (1 if i in inactive else 0) for i in range(n)})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def count(self, kind: str) -> int:
        return self.kinds.count(kind)

    # --- dispatch ---------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        for name, value in (
            ("Accept", "application/json"),
            ("OData-MaxVersion", "4.0"),
            ("OData-Version", "4.0"),
            ("If-None-Match", "null"),
        ):
            assert request.headers.get(name) == value, f"missing header {name}"
        assert request.headers.get("Authorization", "").startswith("Bearer ")
        assert "cookie" not in request.headers
        path = request.url.raw_path.decode()
        assert path.startswith(API), path
        kind = self._kind(request.method, path[len(API) :])
        with self.lock:
            self.requests.append(request)
            self.kinds.append(kind)
        if self.hook is not None:
            injected = self.hook(request, kind)
            if injected is not None:
                return injected
        response = self.route(request.method, path[len(API) :], request.content, request.headers)
        if self.dop_hint and (kind == "whoami" or self.dop_on_every_response):
            response.headers["x-ms-dop-hint"] = str(self.dop_hint)
        response.headers["Set-Cookie"] = "ARRAffinity=abc; Path=/"
        return response

    @staticmethod
    def _kind(method: str, rel: str) -> str:
        target = rel.split("?", 1)[0]
        if target == "WhoAmI":
            return "whoami"
        if target == "$batch":
            return "batch"
        if target in ("AddListMembersList", "RemoveListMembersList"):
            return target
        if "listcontact_association" in target:
            return "members"
        if target.startswith("lists"):
            return "list-" + method.lower()
        if target.startswith("contacts"):
            return "contacts"
        return "other"

    def route(
        self, method: str, rel: str, body: bytes, headers: httpx.Headers | dict[str, str]
    ) -> httpx.Response:
        target, _, query = rel.partition("?")
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        if method == "GET" and target == "WhoAmI":
            return _json(
                {"UserId": guid(999999), "BusinessUnitId": guid(1), "OrganizationId": guid(2)}
            )
        if method == "POST" and target == "$batch":
            return self._batch(body, headers.get("Content-Type", ""))
        if method == "POST" and target in ("AddListMembersList", "RemoveListMembersList"):
            return self._action(target, json.loads(body))
        m = re.fullmatch(r"lists\(([0-9a-f-]{36})\)/listcontact_association", target)
        if method == "GET" and m:
            return self._members(m.group(1), params, headers)
        m = re.fullmatch(r"lists\(([0-9a-f-]{36})\)", target)
        if method == "GET" and m:
            found = self.lists.get(m.group(1))
            if found is None:
                return _error(404, "0x80040217", f"list With Id = {m.group(1)} Does Not Exist")
            return _json(_list_row(found))
        if method == "GET" and target == "lists":
            name_match = re.fullmatch(r"listname eq '((?:[^']|'')*)'", params.get("$filter", ""))
            assert name_match, params
            name = name_match.group(1).replace("''", "'")
            return _json({"value": [_list_row(x) for x in self.lists.values() if x.name == name]})
        if method == "POST" and target == "lists":
            data = json.loads(body)
            new = FakeList(
                str(uuid.uuid4()), data["listname"], data["createdfromcode"], data["type"]
            )
            new.description = data.get("description")
            self.lists[new.id] = new
            return _json(_list_row(new), 201)
        if method == "GET" and target == "contacts":
            return self._contacts(params)
        return _error(400, "0x80060888", f"unsupported {method} {target}")

    # --- handlers ---------------------------------------------------------------------------

    def _members(self, list_id: str, params: dict[str, str], headers: object) -> httpx.Response:
        found = self.lists.get(list_id)
        if found is None:
            return _error(404, "0x80040217", f"list With Id = {list_id} Does Not Exist")
        prefer = getattr(headers, "get", lambda *_: "")("Prefer", "")
        size = self.page_size
        if "odata.maxpagesize=" in prefer:
            size = min(size, int(prefer.split("odata.maxpagesize=")[1].split(",")[0]))
        # keyset paging like the service: the token is the last id of the previous page
        ordered = sorted(found.members, reverse=self.descending_pages)
        after = params.get("$skiptoken")
        if after:
            beyond = (lambda c: c < after) if self.descending_pages else (lambda c: c > after)
            ordered = [c for c in ordered if beyond(c)]
        page = ordered[:size]
        if self.descending_pages:
            page = sorted(page)  # each page sorted inside, pages in descending order
        select = params.get("$select", "")
        assert select in ("contactid", "contactid,statecode"), select
        rows: list[dict[str, object]] = [{"contactid": c} for c in page]
        if "statecode" in select:  # the pages are contact rows: any contact column can come
            for row in rows:
                row["statecode"] = self.contacts.get(str(row["contactid"]))
        data: dict[str, object] = {"value": rows}
        if len(ordered) > size:
            token = min(page) if self.descending_pages else page[-1]
            data["@odata.nextLink"] = (
                f"{BASE}{API}lists({list_id})/listcontact_association"
                f"?$select={select}&$skiptoken={token}"
            )
        return _json(data)

    def _contacts(self, params: dict[str, str]) -> httpx.Response:
        assert params.get("$select") == "contactid,statecode", params
        flt = params["$filter"]
        m = re.fullmatch(
            r"Microsoft\.Dynamics\.CRM\.In\(PropertyName='contactid',PropertyValues=\[(.*)\]\)", flt
        )
        assert m, flt
        ids = [v.strip("'") for v in m.group(1).split(",")]
        rows = [{"contactid": c, "statecode": self.contacts[c]} for c in ids if c in self.contacts]
        return _json({"value": rows})

    def _action(self, name: str, body: dict[str, object]) -> httpx.Response:
        list_ref = body["List"]
        assert isinstance(list_ref, dict)
        list_id = str(list_ref["listid"])
        found = self.lists.get(list_id)
        if found is None:
            return _error(404, "0x80040217", f"list With Id = {list_id} Does Not Exist")
        members = body["Members"]
        assert isinstance(members, list)
        ids = [str(m["contactid"]) for m in members]
        with self.lock:
            self.action_sizes.append(len(ids))
        if self.max_members is not None and len(ids) > self.max_members:
            message = self.max_members_message.format(n=len(ids), cap=self.max_members)
            return _error(400, "0x80040203", message)
        if name == "AddListMembersList":
            for c in ids:
                if c not in self.contacts:
                    shown = c if self.name_culprit else "(not shown)"
                    return _error(404, "0x80040217", f"contact With Id = {shown} Does Not Exist")
            found.members.update(ids)
        else:
            found.members.difference_update(ids)
        return httpx.Response(204)

    def _batch(self, body: bytes, content_type: str) -> httpx.Response:
        boundary = "batchresponse_" + uuid.uuid4().hex
        out: list[str] = []
        for part in _request_parts(body, content_type):
            method, url, inner_body = part
            rel = urlsplit(url).path[len(API) :]
            query = urlsplit(url).query
            inner = self.route(method, rel + ("?" + query if query else ""), inner_body, {})
            out += [
                f"--{boundary}",
                "Content-Type: application/http",
                "Content-Transfer-Encoding: binary",
                "",
                f"HTTP/1.1 {inner.status_code} X",
                "Content-Type: application/json; odata.metadata=minimal",
                *(f"{k}: {v}" for k, v in inner.headers.items() if k in ("retry-after", "req_id")),
                "",
                inner.content.decode(),
            ]
        out += [f"--{boundary}--", ""]
        return httpx.Response(
            200,
            content="\r\n".join(out).encode(),
            headers={"Content-Type": f"multipart/mixed; boundary={boundary}"},
        )


def _request_parts(body: bytes, content_type: str) -> list[tuple[str, str, bytes]]:
    """Parse the request side of a $batch by reusing the response parser's splitting rules."""
    text = body.decode()
    assert "\r\n" in text and "\n" not in text.replace("\r\n", ""), "batch must use CRLF"
    boundary = content_type.split("boundary=")[1].strip('"')
    parts = []
    for chunk in text.split(f"--{boundary}")[1:]:
        if chunk.startswith("--"):
            break
        _, _, http = chunk.partition("\r\n\r\n")
        request_line, _, rest = http.partition("\r\n")
        method, url, _ = request_line.split(" ")
        _, _, inner_body = rest.partition("\r\n\r\n")
        parts.append((method, url, inner_body.strip().encode()))
    return parts


def _list_row(x: FakeList) -> dict[str, object]:
    return {
        "listid": x.id,
        "listname": x.name,
        "type": x.type,
        "createdfromcode": x.createdfromcode,
        "statecode": x.statecode,
        "lockstatus": x.lockstatus,
        "createdon": "2026-01-01T00:00:00Z",
        "description": x.description,
    }


def _json(data: object, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=data, headers={"REQ_ID": str(uuid.uuid4())})


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={"error": {"code": code, "message": message}},
        headers={"REQ_ID": "req-" + code},
    )


__all__ = ["BASE", "FakeDataverse", "FakeList", "guid", "parse_batch"]
