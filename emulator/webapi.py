"""The Dataverse Web API surface (/api/data/v9.2/...), independent of the HTTP transport.

`WebApi.handle(ApiRequest) -> ApiResponse` routes, validates and executes one request against the
`State`. Transport concerns (TLS, auth, service protection, faults, cost sleeps) live in server.py;
$batch parsing lives in batch.py and calls back into `handle` for each part.

Documented choices for behaviour the reference marks UNCONFIRMED (also in README.md):
* AddListMembersList with a contact already in the list: no-op for that member (204).
* A nonexistent contact in AddListMembersList / RemoveListMembersList / AddMemberList /
  RemoveMemberList rejects the whole call: 404, code 0x80040217,
  "contact With Id = <id> Does Not Exist"; nothing is changed (all-or-nothing).
* Inactive contacts (statecode 1) may be added (the list's ignoreinactivelistmembers implies it).
* RemoveListMembersList / RemoveMemberList of a contact that is not a member: no-op.
* RemoveListMembersList is an unbound action with the same List + Members body as
  AddListMembersList; RemoveMemberList is bound like AddMemberList and takes EntityId = contactid.
* Dynamic (type true), non-contact (createdfromcode != 2), inactive (statecode 1) or locked
  (lockstatus true) lists reject adds AND removes with 400 (code 0x80044331).
* Empty Members collection: 204, nothing changes. More than `max_members_per_call` (1,000)
  members in one AddListMembersList / RemoveListMembersList: 400 (0x80040203) "The number of
  members (N) exceeds the maximum of 1000 allowed in one request." (the service's limit is not
  documented; a stricter stand-in caps at 1,000). No maximum ids per Microsoft.Dynamics.CRM.In
  (URL length only).
* `membertype` is optional on list create (defaults to createdfromcode); if sent it must match.
* Not found is 404 with code 0x80040217 and "<table> With Id = <id> Does Not Exist".
* `$ref` associate/disassociate on listcontact_association and writes to listmembers: 400
  (not emulated; reported to fail on real orgs). Alternate keys: none (keys must be GUIDs).
* `List` may omit @odata.type (its parameter type is concrete); every member must carry
  @odata.type (Members is Collection(crmbaseentity)) and its key, else 400.
* Strict headers: OData-Version: 4.0, OData-MaxVersion: 4.0 and an Accept naming application/json
  are required on every outer API request (real Dataverse is lenient about some of these); parts
  inside $batch are exempt.
* $filter supports eq, ne, and, or, parentheses and Microsoft.Dynamics.CRM.In. Documented OData
  the emulator does not emulate (other system query options, other operators/functions, $top
  combined with odata.maxpagesize, metadata changes) is a 501 that says so, so a gap is never
  mistaken for a client error. EntityDefinitions (read-only) serves the metadata Microsoft's
  Python SDK reads (emulator/metadata.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

from emulator import cid as cid_tables
from emulator import odata
from emulator.auth import Principal
from emulator.config import EmulatorConfig
from emulator.data import normalize_guid
from emulator.filters import all_hold, group_key_values
from emulator.metadata import Metadata, is_metadata_path
from emulator.odata import (
    BOOL,
    CODE_DUPLICATE,
    CODE_INVALID_ARGUMENT,
    CODE_NOT_FOUND,
    CODE_QUERY,
    CODE_VALIDATION,
    GUID,
    INT,
    STRING,
    ApiError,
    Eq,
    In,
    bad_request,
    unsupported,
)
from emulator.state import CONTACT_FIELDS, LIST_FIELDS, State, listmember_id

API_PREFIX = "/api/data/v9.2/"
JSON_TYPE = "application/json; odata.metadata=minimal"
NS = "Microsoft.Dynamics.CRM."
CONTACT_FILTER_PROPS = {"contactid": GUID, "statecode": INT, "statuscode": INT}
LIST_FILTER_PROPS = {
    "listid": GUID,
    "listname": STRING,
    "createdfromcode": INT,
    "membertype": INT,
    "type": BOOL,
    "statecode": INT,
    "statuscode": INT,
    "lockstatus": BOOL,
}
LISTMEMBER_FIELDS = ("listmemberid", "_listid_value", "_entityid_value", "entitytype")
LISTMEMBER_FILTER_PROPS = {"_listid_value": GUID, "_entityid_value": GUID}
MEMBER_TYPES = {"contact": ("contactid", 2), "account": ("accountid", 1), "lead": ("leadid", 4)}
SUPPORTED_QUERY_OPTIONS = {"$select", "$filter", "$top", "$skiptoken"}
# Writable list columns with their JSON types and maximum lengths (S16).
LIST_WRITABLE: dict[str, tuple[type, int | None]] = {
    "listname": (str, 128),
    "createdfromcode": (int, None),
    "type": (bool, None),
    "membertype": (int, None),
    "description": (str, 2000),
    "purpose": (str, 512),
    "source": (str, 128),
    "lockstatus": (bool, None),
    "statecode": (int, None),
    "statuscode": (int, None),
    "query": (str, None),
    "ignoreinactivelistmembers": (bool, None),
    "donotsendonoptout": (bool, None),
}
CONTACT_WRITABLE: dict[str, tuple[type, int | None]] = {
    "firstname": (str, 50),
    "lastname": (str, 50),
    "emailaddress1": (str, 100),
    "statecode": (int, None),
    "statuscode": (int, None),
}


@dataclass
class ApiRequest:
    method: str
    target: str  # path and query relative to the service root, e.g. "contacts?$select=contactid"
    headers: dict[str, str]  # lower-case names
    body: bytes
    principal: Principal
    in_batch: bool = False


@dataclass
class ApiResponse:
    status: int
    kind: str
    body: Any = None  # JSON-able, or bytes for $batch
    headers: dict[str, str] = field(default_factory=dict)
    cost: float = 0.0  # model seconds
    added: int = 0
    removed: int = 0
    rows: int = 0
    members_touched: int = 0

    def is_error(self) -> bool:
        return self.status >= 400


@dataclass
class _Query:
    options: dict[str, str]
    aliases: dict[str, str]
    prefs: odata.Preferences


_HEADER_NAMES = {"odata-version": "OData-Version", "odata-maxversion": "OData-MaxVersion"}
_SAFE = "$(),'@:/-_."  # characters left readable in nextLink query values
_KEYED = re.compile(r"^(contacts|lists)\(([^()]*)\)(?:/(.+))?$")


def classify(method: str, path: str) -> str:
    """Request kind used in stats; never raises."""
    if path in ("WhoAmI", "WhoAmI()"):
        return "whoami"
    if path == "$batch":
        return "batch"
    if path == "AddListMembersList":
        return "add-list-members"
    if path == "RemoveListMembersList":
        return "remove-list-members"
    if path == "listmembers":
        return "listmembers-query"
    if path in ("contacts", "lists"):
        if method == "GET":
            return "contacts-query" if path == "contacts" else "list-query"
        return "contact-create" if path == "contacts" else "list-create"
    m = _KEYED.match(path)
    if m:
        entity, sub = m.group(1)[:-1], m.group(3)
        if sub is None:
            verb = {"GET": "get", "PATCH": "update", "DELETE": "delete"}.get(method, "other")
            return f"{entity}-{verb}"
        if sub == "listcontact_association":
            return "list-members-read"
        if sub.endswith("AddMemberList"):
            return "add-member"
        if sub.endswith("RemoveMemberList"):
            return "remove-member"
    if path == "":
        return "service-document"
    if is_metadata_path(path):
        return "metadata"
    return cid_tables.classify(method, path) or "other"


class WebApi:
    def __init__(
        self,
        cfg: EmulatorConfig,
        state: State,
        organization_id: str,
        business_unit_id: str,
        batch_executor: Callable[[WebApi, ApiRequest, _Query], ApiResponse] | None = None,
    ) -> None:
        self.cfg = cfg
        self.state = state
        self.organization_id = organization_id
        self.business_unit_id = business_unit_id
        self.service_root = ""  # set once the port is known, ends with "/api/data/v9.2/"
        self.batch_executor = batch_executor
        self.on_batch_op: Callable[[str, int], None] | None = None
        self.cid: cid_tables.CidTables | None = None  # Customer Insights tables (emulator/cid.py)

    # -- entry --------------------------------------------------------------------------------
    def handle(self, req: ApiRequest) -> ApiResponse:
        path, _, query = req.target.partition("?")
        path = unquote(path)  # a path keeps '+' literally (unlike a query string)
        kind = classify(req.method, path)
        try:
            if not req.in_batch:
                self._check_headers(req)
            if is_metadata_path(path):  # its own query options ($expand): emulator/metadata.py
                body = Metadata(self.service_root).handle(req.method, path, query)
                resp = ApiResponse(200, kind, body)
            else:
                q = self._parse_query(query, req)
                resp = self._route(req, path, q)
        except ApiError as err:
            resp = ApiResponse(err.status, kind, err.body(), dict(err.headers))
        resp.kind = kind
        resp.cost += self._cost(resp) if kind != "batch" else 0.0
        resp.headers.setdefault("OData-Version", "4.0")
        if not isinstance(resp.body, bytes | type(None)):
            resp.headers.setdefault("Content-Type", JSON_TYPE)
        return resp

    def _cost(self, resp: ApiResponse) -> float:
        c = self.cfg.costs
        return (
            c.base_ms + c.per_member_ms * resp.members_touched + c.per_row_read_ms * resp.rows
        ) / 1000.0

    def _check_headers(self, req: ApiRequest) -> None:
        # Strict by choice: real Dataverse tolerates missing OData-* headers on many requests.
        for name in ("odata-version", "odata-maxversion"):
            value = req.headers.get(name)
            if value is None:
                raise ApiError(
                    400,
                    CODE_INVALID_ARGUMENT,
                    f"The '{_HEADER_NAMES[name]}' header is required (the emulator is strict: "
                    "send OData-Version: 4.0 and OData-MaxVersion: 4.0).",
                )
            if value.strip() not in ("4.0", "4.01"):
                raise ApiError(400, CODE_INVALID_ARGUMENT, f"Unsupported {name} '{value}'.")
        accept = req.headers.get("accept", "")
        if "application/json" not in accept.lower():
            raise ApiError(
                400,
                CODE_INVALID_ARGUMENT,
                "The Accept header must name application/json (the emulator is strict).",
            )

    def _parse_query(self, query: str, req: ApiRequest) -> _Query:
        options: dict[str, str] = {}
        aliases: dict[str, str] = {}
        for raw in query.split("&") if query else []:
            if not raw:
                continue
            key, eq, value = raw.partition("=")
            key, value = unquote_plus(key), unquote_plus(value)
            if not eq:
                raise bad_request(f"Query option '{key}' has no value.")
            target = aliases if key.startswith("@") else options
            if key in target:
                raise bad_request(f"Query option '{key}' is specified more than once.")
            if key.startswith("$"):
                if key not in SUPPORTED_QUERY_OPTIONS:
                    raise unsupported(f"the query option '{key}'")
            elif not key.startswith("@"):
                raise unsupported(f"the custom query option '{key}'")
            target[key] = value
        prefs = odata.parse_prefer(
            [req.headers["prefer"]] if "prefer" in req.headers else [], self.cfg.max_page_size
        )
        return _Query(options, aliases, prefs)

    # -- routing ------------------------------------------------------------------------------
    def _route(self, req: ApiRequest, path: str, q: _Query) -> ApiResponse:
        m = req.method
        if path == "":
            self._only(m, "GET")
            self._no_options(q)
            return self._service_document()
        if path in ("WhoAmI", "WhoAmI()"):
            self._only(m, "GET")
            self._no_options(q)
            return self._whoami(req)
        if path == "$batch":
            self._only(m, "POST")
            if req.in_batch:
                raise bad_request("Nested $batch requests are not allowed.")
            self._no_options(q)
            if self.batch_executor is None:
                raise unsupported("$batch")
            return self.batch_executor(self, req, q)
        if path in ("AddListMembersList", "RemoveListMembersList"):
            self._only(m, "POST")
            self._no_options(q)
            return self._member_action(req, add=path.startswith("Add"))
        if path == "listmembers":
            if m in ("POST", "DELETE", "PATCH"):
                raise unsupported(f"{m} on listmembers (only reads; use the list member actions)")
            self._only(m, "GET")
            return self._listmembers_query(req, q)
        if path == "contacts":
            self._only(m, "GET", "POST")
            return self._contacts_query(q) if m == "GET" else self._contact_create(req, q)
        if path == "lists":
            self._only(m, "GET", "POST")
            return self._lists_query(q) if m == "GET" else self._list_create(req, q)
        keyed = _KEYED.match(path)
        if keyed:
            entity, key, sub = keyed.group(1), keyed.group(2), keyed.group(3)
            rid = self._key(entity, key)
            if entity == "contacts":
                if sub is not None:
                    raise self._no_segment(sub)
                self._only(m, "GET", "PATCH", "DELETE")
                return {
                    "GET": self._contact_get,
                    "PATCH": self._contact_patch,
                    "DELETE": self._contact_delete,
                }[m](req, q, rid)
            if sub is None:
                self._only(m, "GET", "PATCH", "DELETE")
                return {
                    "GET": self._list_get,
                    "PATCH": self._list_patch,
                    "DELETE": self._list_delete,
                }[m](req, q, rid)
            if sub == "listcontact_association":
                self._only(m, "GET")
                return self._members_read(q, rid, path)
            if sub.startswith("listcontact_association"):
                # Associate/disassociate of list members is reported to fail on real orgs [S26].
                raise unsupported(
                    "$ref associate/disassociate of list members (use AddListMembersList, "
                    "RemoveListMembersList, AddMemberList or RemoveMemberList)"
                )
            if sub in (NS + "AddMemberList", NS + "RemoveMemberList"):
                self._only(m, "POST")
                self._no_options(q)
                return self._member_single(req, rid, add=sub.endswith("AddMemberList"))
            if sub in ("AddMemberList", "RemoveMemberList"):
                # Bound actions need the namespace [S10].
                raise bad_request(
                    "Request message has unresolved parameters.", CODE_INVALID_ARGUMENT
                )
            raise self._no_segment(sub)
        if cid_tables.serves(path):
            return cid_tables.handle(self, self.cid, req, path, q)
        raise self._no_segment(path.split("/")[0].split("(")[0] or path)

    @staticmethod
    def _no_segment(segment: str) -> ApiError:
        return ApiError(404, CODE_QUERY, f"Resource not found for the segment '{segment}'.")

    @staticmethod
    def _only(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise ApiError(
                405, CODE_QUERY, f"The requested resource does not support http method '{method}'."
            )

    @staticmethod
    def _no_options(q: _Query, allowed: tuple[str, ...] = ()) -> None:
        extra = [k for k in q.options if k not in allowed]
        if extra:
            raise unsupported(f"the query option '{extra[0]}' on this resource")

    @staticmethod
    def _key(entity: str, key: str) -> str:
        pk = "contactid" if entity == "contacts" else "listid"
        raw = key.split("=", 1)[1] if key.startswith(pk + "=") else key
        guid = normalize_guid(raw)
        if guid is None:
            raise bad_request(
                f"Bad Request - Error in query syntax: '{key}' is not a valid key for {entity} "
                "(Guid should contain 32 digits with 4 dashes "
                "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)).",
            )
        return guid

    def _json_body(self, req: ApiRequest) -> dict[str, Any]:
        ctype = req.headers.get("content-type", "")
        if not req.body:
            raise bad_request("A request body is required.", CODE_INVALID_ARGUMENT)
        if not ctype.lower().startswith("application/json"):
            raise ApiError(
                415,
                CODE_INVALID_ARGUMENT,
                "The request body must be sent with Content-Type: application/json.",
            )
        try:
            doc = json.loads(req.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(
                f"The request body is not valid JSON: {exc}", CODE_INVALID_ARGUMENT
            ) from exc
        if not isinstance(doc, dict):
            raise bad_request("The request body must be a JSON object.", CODE_INVALID_ARGUMENT)
        return doc

    # -- representations ----------------------------------------------------------------------
    def _context(self, fragment: str) -> str:
        return f"{self.service_root}$metadata#{fragment}"

    @staticmethod
    def _project(row: dict[str, Any], select: list[str] | None, pk: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "versionnumber" in row:
            out["@odata.etag"] = f'W/"{row["versionnumber"]}"'
        names = list(row) if select is None else [*select, pk]
        for name in names:
            if (name in row and name != "versionnumber") or name == pk:
                out[name] = row.get(name)
        return out

    def _collection(
        self,
        q: _Query,
        path: str,
        fragment: str,
        rows: Iterator[tuple[str, dict[str, Any]]],
        select: list[str] | None,
        pk: str,
    ) -> ApiResponse:
        """Page ``rows`` (an ordered iterator of (position, row) after the skiptoken)."""
        top = odata.parse_top(q.options.get("$top"))
        if top is not None and (q.prefs.max_page_size is not None or "$skiptoken" in q.options):
            raise unsupported("$top combined with odata.maxpagesize or $skiptoken")
        if top is not None and top > self.cfg.max_page_size:
            raise unsupported(f"$top greater than {self.cfg.max_page_size}")
        size = top or q.prefs.max_page_size or self.cfg.max_page_size
        page: list[dict[str, Any]] = []
        last = ""
        more = False
        for pos, row in rows:
            if len(page) == size:
                more = True
                break
            page.append(self._project(row, select, pk))
            last = pos
        body: dict[str, Any] = {"@odata.context": self._context(fragment), "value": page}
        headers: dict[str, str] = {}
        if q.prefs.max_page_size is not None:
            headers["Preference-Applied"] = f"odata.maxpagesize={q.prefs.max_page_size}"
        if more and top is None:
            token = odata.make_skiptoken(self._query_key(path, q), last)
            kept = [(k, v) for k, v in q.options.items() if k != "$skiptoken"] + list(
                q.aliases.items()
            )
            kept.append(("$skiptoken", token))
            encoded = "&".join(f"{k}={quote(v, safe=_SAFE)}" for k, v in kept)
            body["@odata.nextLink"] = f"{self.service_root}{path}?{encoded}"
        return ApiResponse(200, "", body, headers, rows=len(page))

    @staticmethod
    def _query_key(path: str, q: _Query) -> str:
        opts = {k: v for k, v in q.options.items() if k != "$skiptoken"}
        return json.dumps([path, sorted(opts.items()), sorted(q.aliases.items())])

    def _after(self, path: str, q: _Query) -> str | None:
        token = q.options.get("$skiptoken")
        return None if token is None else odata.read_skiptoken(token, self._query_key(path, q))

    # -- service document / WhoAmI -----------------------------------------------------------
    def _service_document(self) -> ApiResponse:
        sets = ["contacts", "lists", "listmembers"]
        return ApiResponse(
            200,
            "",
            {
                "@odata.context": self._context("").rstrip("#"),
                "value": [{"name": s, "kind": "EntitySet", "url": s} for s in sets],
            },
        )

    def _whoami(self, req: ApiRequest) -> ApiResponse:
        return ApiResponse(
            200,
            "",
            {
                "@odata.context": self._context(NS + "WhoAmIResponse"),
                "BusinessUnitId": self.business_unit_id,
                "UserId": req.principal.user_id,
                "OrganizationId": self.organization_id,
            },
        )

    # -- contacts -----------------------------------------------------------------------------
    def _contacts_query(self, q: _Query) -> ApiResponse:
        self._no_options(q, ("$select", "$filter", "$top", "$skiptoken"))
        select = odata.parse_select(q.options.get("$select"), CONTACT_FIELDS, "contact")
        conds = []
        if "$filter" in q.options:
            conds = odata.parse_filter(
                q.options["$filter"], q.aliases, CONTACT_FILTER_PROPS, "contact"
            )
        for c in conds:
            if isinstance(c, In) and c.prop != "contactid":
                raise unsupported(f"Microsoft.Dynamics.CRM.In on '{c.prop}'")
        ids = group_key_values(conds, "contactid")  # looked up by id instead of a scan
        after = self._after("contacts", q)

        def matches(row: dict[str, Any]) -> bool:
            return all_hold(conds, row)

        def by_id() -> Iterator[tuple[str, dict[str, Any]]]:
            for cid in sorted(ids or ()):
                if after is not None and cid <= after:
                    continue
                row = self.state.get_contact(cid)
                if row is not None and matches(row):
                    yield cid, row

        def scan() -> Iterator[tuple[str, dict[str, Any]]]:
            start = 0 if after is None else int(after) + 1
            for pos, row in self.state.iter_contacts(start):
                if matches(row):
                    yield str(pos), row

        fragment = "contacts" + (f"({','.join(select)})" if select else "")
        return self._collection(
            q, "contacts", fragment, by_id() if ids is not None else scan(), select, "contactid"
        )

    def _contact_get(self, req: ApiRequest, q: _Query, cid: str) -> ApiResponse:
        self._no_options(q, ("$select",))
        select = odata.parse_select(q.options.get("$select"), CONTACT_FIELDS, "contact")
        row = self.state.get_contact(cid)
        if row is None:
            raise self._missing("contact", cid)
        body = {
            "@odata.context": self._context("contacts/$entity"),
            **self._project(row, select, "contactid"),
        }
        return ApiResponse(200, "", body, rows=1)

    @staticmethod
    def _missing(entity: str, rid: str) -> ApiError:
        return ApiError(404, CODE_NOT_FOUND, f"{entity} With Id = {rid} Does Not Exist")

    def _contact_create(self, req: ApiRequest, q: _Query) -> ApiResponse:
        self._no_options(q, ("$select",))
        select = odata.parse_select(q.options.get("$select"), CONTACT_FIELDS, "contact")
        doc = self._json_body(req)
        cid = doc.pop("contactid", None)
        if cid is not None and (not isinstance(cid, str) or normalize_guid(cid) is None):
            raise bad_request("contactid must be a GUID string.", CODE_INVALID_ARGUMENT)
        fields = self._typed_fields(doc, CONTACT_WRITABLE, "contact")
        state = fields.get("statecode", 0)
        if state not in (0, 1):
            raise bad_request("statecode must be 0 or 1.", CODE_VALIDATION)
        try:
            new_id = self.state.add_contact(
                firstname=fields.get("firstname") or "",
                lastname=fields.get("lastname") or "",
                statecode=state,
                contactid=cid,
                emailaddress1=fields.get("emailaddress1"),
            )
        except KeyError as exc:
            raise ApiError(
                412, CODE_DUPLICATE, "A record with matching key values already exists."
            ) from exc
        return self._created(
            q, "contacts", new_id, self.state.get_contact(new_id) or {}, select, "contactid"
        )

    def _created(
        self,
        q: _Query,
        entity_set: str,
        rid: str,
        row: dict[str, Any],
        select: list[str] | None,
        pk: str,
    ) -> ApiResponse:
        headers = {"OData-EntityId": f"{self.service_root}{entity_set}({rid})"}
        if q.prefs.return_representation:
            headers["Preference-Applied"] = "return=representation"
            body = {
                "@odata.context": self._context(f"{entity_set}/$entity"),
                **self._project(row, select, pk),
            }
            return ApiResponse(201, "", body, headers)
        return ApiResponse(204, "", None, headers)

    def _contact_patch(self, req: ApiRequest, q: _Query, cid: str) -> ApiResponse:
        self._no_options(q)
        doc = self._json_body(req)
        fields = self._typed_fields(doc, CONTACT_WRITABLE, "contact")
        if not self.state.contact_exists(cid):
            raise unsupported("upsert (PATCH of a nonexistent contact)")
        if set(fields) - {"statecode", "statuscode"}:
            raise unsupported("updating contact columns other than statecode/statuscode")
        if "statecode" in fields:
            if fields["statecode"] not in (0, 1):
                raise bad_request("statecode must be 0 or 1.", CODE_VALIDATION)
            self.state.set_contact_state(cid, fields["statecode"])
        return ApiResponse(204, "", None, {"OData-EntityId": f"{self.service_root}contacts({cid})"})

    def _contact_delete(self, req: ApiRequest, q: _Query, cid: str) -> ApiResponse:
        self._no_options(q)
        if not self.state.delete_contact(cid):
            raise self._missing("contact", cid)
        return ApiResponse(204, "")

    # -- lists --------------------------------------------------------------------------------
    def _typed_fields(
        self, doc: dict[str, Any], writable: dict[str, tuple[type, int | None]], entity: str
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in doc.items():
            if name not in writable:
                raise bad_request(
                    f"The property '{name}' does not exist on type "
                    f"'Microsoft.Dynamics.CRM.{entity}'. "
                    "Make sure to only use property names that are defined by the type.",
                    CODE_QUERY,
                )
            kind, max_len = writable[name]
            if value is None:
                out[name] = None
                continue
            ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
            if not ok:
                raise bad_request(
                    f"Cannot convert the literal '{value}' to the expected type "
                    f"'Edm.{ {str: 'String', int: 'Int32', bool: 'Boolean'}[kind] }' for '{name}'.",
                    CODE_QUERY,
                )
            if max_len is not None and isinstance(value, str) and len(value) > max_len:
                raise bad_request(
                    f"A validation error occurred. The length of the '{name}' attribute of the "
                    f"'{entity}' entity exceeded the maximum allowed length of '{max_len}'.",
                    CODE_VALIDATION,
                )
            out[name] = value
        return out

    def _list_fields(self, doc: dict[str, Any], creating: bool) -> dict[str, Any]:
        owner = doc.pop("ownerid@odata.bind", None)
        fields = self._typed_fields(doc, LIST_WRITABLE, "list")
        if owner is not None:
            m = (
                re.fullmatch(r"/?systemusers\(([^()]+)\)", owner)
                if isinstance(owner, str)
                else None
            )
            if m is None or normalize_guid(m.group(1)) is None:
                raise bad_request(
                    "ownerid@odata.bind must reference /systemusers(<guid>).", CODE_INVALID_ARGUMENT
                )
            fields["_ownerid_value"] = m.group(1).lower()
        if creating:
            if not fields.get("listname"):
                raise bad_request(
                    "A validation error occurred. listname is required.", CODE_VALIDATION
                )
            if fields.get("createdfromcode") is None:
                raise bad_request(
                    "A validation error occurred. createdfromcode is required.", CODE_VALIDATION
                )
            if fields.get("statecode") not in (None, 0) or fields.get("statuscode") not in (
                None,
                0,
            ):
                raise unsupported("creating an inactive list")
            fields.pop("statecode", None)
            fields.pop("statuscode", None)
        for required in ("listname", "createdfromcode", "type", "lockstatus", "statecode"):
            if required in fields and fields[required] is None:
                raise bad_request(f"{required} cannot be null.", CODE_VALIDATION)
        code = fields.get("createdfromcode")
        if code is not None and code not in (1, 2, 4):
            raise bad_request(
                f"createdfromcode {code} is not a valid option (1, 2 or 4).", CODE_VALIDATION
            )
        if (
            fields.get("membertype") is not None
            and code is not None
            and fields["membertype"] != code
        ):
            raise bad_request("membertype must match createdfromcode.", CODE_VALIDATION)
        return fields

    def _list_create(self, req: ApiRequest, q: _Query) -> ApiResponse:
        self._no_options(q, ("$select",))
        select = odata.parse_select(q.options.get("$select"), LIST_FIELDS, "list")
        doc = self._json_body(req)
        lid = doc.pop("listid", None)
        if lid is not None and (not isinstance(lid, str) or normalize_guid(lid) is None):
            raise bad_request("listid must be a GUID string.", CODE_INVALID_ARGUMENT)
        fields = self._list_fields(doc, creating=True)
        try:
            new_id = self.state.create_list(fields, lid)
        except KeyError as exc:
            raise ApiError(
                412, CODE_DUPLICATE, "A record with matching key values already exists."
            ) from exc
        return self._created(
            q, "lists", new_id, self.state.get_list(new_id) or {}, select, "listid"
        )

    def _list_get(self, req: ApiRequest, q: _Query, lid: str) -> ApiResponse:
        self._no_options(q, ("$select",))
        select = odata.parse_select(q.options.get("$select"), LIST_FIELDS, "list")
        row = self.state.get_list(lid)
        if row is None:
            raise self._missing("list", lid)
        body = {
            "@odata.context": self._context("lists/$entity"),
            **self._project(row, select, "listid"),
        }
        return ApiResponse(200, "", body, rows=1)

    def _lists_query(self, q: _Query) -> ApiResponse:
        self._no_options(q, ("$select", "$filter", "$top", "$skiptoken"))
        select = odata.parse_select(q.options.get("$select"), LIST_FIELDS, "list")
        conds = []
        if "$filter" in q.options:
            conds = odata.parse_filter(q.options["$filter"], q.aliases, LIST_FILTER_PROPS, "list")
        after = self._after("lists", q)

        def matches(row: dict[str, Any]) -> bool:
            # string comparisons are case-insensitive [S7]
            return all_hold(conds, row, fold=frozenset({"listname"}))

        def rows() -> Iterator[tuple[str, dict[str, Any]]]:
            for row in self.state.all_lists():
                if (after is None or row["listid"] > after) and matches(row):
                    yield row["listid"], row

        fragment = "lists" + (f"({','.join(select)})" if select else "")
        return self._collection(q, "lists", fragment, rows(), select, "listid")

    def _list_patch(self, req: ApiRequest, q: _Query, lid: str) -> ApiResponse:
        self._no_options(q, ("$select",))
        select = odata.parse_select(q.options.get("$select"), LIST_FIELDS, "list")
        doc = self._json_body(req)
        if "listid" in doc and str(doc.pop("listid")).lower() != lid:
            raise bad_request("listid in the body does not match the key.", CODE_INVALID_ARGUMENT)
        with self.state.lock:
            row = self.state.get_list(lid)
            if_match = req.headers.get("if-match")
            if row is None:
                if if_match is not None:
                    raise self._missing("list", lid)
                # PATCH without If-Match is an upsert in Dataverse: it creates the record.
                fields = self._list_fields(doc, creating=True)
                self.state.create_list(fields, lid)
                return self._patched(q, lid, select)
            if if_match not in (None, "*") and if_match != f'W/"{row["versionnumber"]}"':
                raise ApiError(
                    412,
                    "0x80060882",
                    "The version of the existing record doesn't match the RowVersion property "
                    "provided.",
                )
            fields = self._list_fields(doc, creating=False)
            for fixed in ("createdfromcode", "type", "membertype"):
                if fixed in fields and fields[fixed] != row[fixed]:
                    raise bad_request(
                        f"A validation error occurred. '{fixed}' can't be changed after the "
                        "marketing "
                        "list is created.",
                        CODE_VALIDATION,
                    )
            if "statecode" in fields:
                state = fields["statecode"]
                if state not in (0, 1):
                    raise bad_request("statecode must be 0 or 1.", CODE_VALIDATION)
                fields.setdefault("statuscode", state)
                if fields["statuscode"] != state:
                    raise bad_request(
                        f"{fields['statuscode']} is not a valid status code for state code "
                        f"{state}.",
                        CODE_VALIDATION,
                    )
            elif "statuscode" in fields:
                raise bad_request(
                    "statuscode can only change together with statecode.", CODE_VALIDATION
                )
            reactivating = fields.get("statecode") == 0
            if row["statecode"] == 1 and not reactivating:
                raise bad_request(
                    "Inactive marketing lists are read-only and can't be edited unless they are "
                    "reactivated.",
                    CODE_VALIDATION,
                )
            self.state.update_list(lid, fields)
            return self._patched(q, lid, select)

    def _patched(self, q: _Query, lid: str, select: list[str] | None) -> ApiResponse:
        headers = {"OData-EntityId": f"{self.service_root}lists({lid})"}
        if q.prefs.return_representation:
            headers["Preference-Applied"] = "return=representation"
            row = self.state.get_list(lid) or {}
            body = {
                "@odata.context": self._context("lists/$entity"),
                **self._project(row, select, "listid"),
            }
            return ApiResponse(200, "", body, headers)
        return ApiResponse(204, "", None, headers)

    def _list_delete(self, req: ApiRequest, q: _Query, lid: str) -> ApiResponse:
        self._no_options(q)
        if not self.state.delete_list(lid):
            raise self._missing("list", lid)
        return ApiResponse(204, "")

    # -- members ------------------------------------------------------------------------------
    def _members_read(self, q: _Query, lid: str, path: str) -> ApiResponse:
        self._no_options(q, ("$select", "$top", "$skiptoken"))
        select = odata.parse_select(q.options.get("$select"), CONTACT_FIELDS, "contact")
        if self.state.get_list(lid) is None:
            raise self._missing("list", lid)
        after = self._after(path, q)
        fragment = f"lists({lid})/listcontact_association" + (
            f"({','.join(select)})" if select else ""
        )
        return self._collection(
            q, path, fragment, self._member_rows(lid, after, self._contact_row), select, "contactid"
        )

    @staticmethod
    def _id_row(lid: str, cid: str) -> dict[str, Any] | None:
        return {"contactid": cid}

    def _contact_row(self, lid: str, cid: str) -> dict[str, Any] | None:
        return self.state.get_contact(cid)

    def _listmember_row(self, lid: str, cid: str) -> dict[str, Any] | None:
        return {
            "listmemberid": listmember_id(lid, cid),
            "_listid_value": lid,
            "_entityid_value": cid,
            "entitytype": "contact",
        }

    def _member_rows(
        self, lid: str, after: str | None, make: Callable[[str, str], dict[str, Any] | None]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        while True:
            page, more = self.state.members_page(lid, after, 1000)
            for cid in page:
                row = make(lid, cid)
                if row is not None:
                    yield cid, row
            if not more or not page:
                return
            after = page[-1]

    def _listmembers_query(self, req: ApiRequest, q: _Query) -> ApiResponse:
        self._no_options(q, ("$select", "$filter", "$top", "$skiptoken"))
        select = odata.parse_select(q.options.get("$select"), LISTMEMBER_FIELDS, "listmember")
        conds = []
        if "$filter" in q.options:
            conds = odata.parse_filter(
                q.options["$filter"], q.aliases, LISTMEMBER_FILTER_PROPS, "listmember"
            )
        list_ids = {c.value for c in conds if isinstance(c, Eq) and c.prop == "_listid_value"}
        entity = [c for c in conds if not (isinstance(c, Eq) and c.prop == "_listid_value")]
        if len(list_ids) != 1 or any(not isinstance(c, Eq) for c in entity):
            raise unsupported(
                "listmembers queries other than $filter=_listid_value eq <id> [and "
                "_entityid_value eq <id>]"
            )
        lid = next(iter(list_ids))
        after = self._after("listmembers", q)
        wanted = {c.value for c in entity if isinstance(c, Eq)}
        fragment = "listmembers" + (f"({','.join(select)})" if select else "")
        if self.state.get_list(lid) is None:
            rows: Iterator[tuple[str, dict[str, Any]]] = iter(())
        else:
            rows = (
                (cid, row)
                for cid, row in self._member_rows(lid, after, self._listmember_row)
                if not wanted or cid in wanted
            )
        return self._collection(q, "listmembers", fragment, rows, select, "listmemberid")

    def _check_member_list(self, lid: str, adding: bool) -> None:
        row = self.state.get_list(lid)
        if row is None:
            raise self._missing("list", lid)
        verb = "added to" if adding else "removed from"
        if row["type"]:
            raise bad_request(
                f"Members can't be {verb} a dynamic marketing list; its members come from its "
                "query.",
                CODE_VALIDATION,
            )
        if row["createdfromcode"] != 2:
            raise bad_request(
                f"The marketing list {lid} is not a contact list (createdfromcode "
                f"{row['createdfromcode']}); the emulator only holds contacts.",
                CODE_VALIDATION,
            )
        if row["statecode"] != 0:
            raise bad_request(
                "Inactive marketing lists are read-only and can't be edited unless they are "
                "reactivated.",
                CODE_VALIDATION,
            )
        if row["lockstatus"]:
            raise bad_request(
                f"The marketing list is locked; members can't be {verb} it.", CODE_VALIDATION
            )

    def _member_action(self, req: ApiRequest, add: bool) -> ApiResponse:
        name = "AddListMembersList" if add else "RemoveListMembersList"
        doc = self._json_body(req)
        for key in doc:
            if key not in ("List", "Members"):
                raise bad_request(
                    f"The parameter '{key}' in the request payload is not a valid parameter for "
                    "the "
                    f"operation '{name}'.",
                    CODE_INVALID_ARGUMENT,
                )
        lst = doc.get("List")
        members = doc.get("Members")
        if not isinstance(lst, dict):
            raise bad_request(
                f"The parameter 'List' of '{name}' is required and must be an entity.",
                CODE_INVALID_ARGUMENT,
            )
        if not isinstance(members, list):
            raise bad_request(
                f"The parameter 'Members' of '{name}' is required and must be a collection.",
                CODE_INVALID_ARGUMENT,
            )
        ltype = lst.get("@odata.type")
        if ltype is not None and str(ltype).lstrip("#") != NS + "list":
            raise bad_request(
                f"The 'List' parameter must be of type {NS}list, not '{ltype}'.",
                CODE_INVALID_ARGUMENT,
            )
        lid = self._guid_value(lst.get("listid"), "listid")
        ids: list[str] = []
        for member in members:
            if not isinstance(member, dict):
                raise bad_request("Each member must be an entity object.", CODE_INVALID_ARGUMENT)
            mtype = member.get("@odata.type")
            if mtype is None:
                raise bad_request(
                    "Each member needs '@odata.type' (Members is Collection(crmbaseentity)); "
                    "EdmEntityObject passed should have the key property value set.",
                    CODE_INVALID_ARGUMENT,
                )
            short = str(mtype).lstrip("#").removeprefix(NS)
            if short not in MEMBER_TYPES:
                raise bad_request(
                    f"'{mtype}' is not a valid member type for a marketing list.",
                    CODE_INVALID_ARGUMENT,
                )
            key, _ = MEMBER_TYPES[short]
            if short != "contact":
                raise bad_request(
                    f"All members must be of the list's member type (contact); found '{mtype}'.",
                    CODE_VALIDATION,
                )
            ids.append(self._guid_value(member.get(key), key))
        cap = self.cfg.max_members_per_call
        if len(ids) > cap:
            raise bad_request(
                f"The number of members ({len(ids)}) exceeds the maximum of {cap} allowed in one "
                f"{name} request.",
                CODE_INVALID_ARGUMENT,
            )
        with self.state.transaction():
            self._check_member_list(lid, adding=add)
            for cid in ids:
                if not self.state.contact_exists(cid):
                    raise self._missing("contact", cid)
            if add:
                n = self.state.add_members(lid, ids)
                return ApiResponse(204, "", added=n, members_touched=len(ids))
            n = self.state.remove_members(lid, ids)
            return ApiResponse(204, "", removed=n, members_touched=len(ids))

    @staticmethod
    def _guid_value(value: Any, name: str) -> str:
        if value is None:
            raise bad_request(
                f"EdmEntityObject passed should have the key property value set ('{name}' is "
                "missing).",
                CODE_INVALID_ARGUMENT,
            )
        guid = normalize_guid(value) if isinstance(value, str) else None
        if guid is None:
            raise bad_request(f"'{value}' is not a valid Guid for '{name}'.", CODE_INVALID_ARGUMENT)
        return guid

    def _member_single(self, req: ApiRequest, lid: str, add: bool) -> ApiResponse:
        doc = self._json_body(req)
        extra = [k for k in doc if k != "EntityId"]
        if extra:
            raise bad_request(
                f"The parameter '{extra[0]}' in the request payload is not a valid parameter for "
                "the "
                f"operation '{'AddMemberList' if add else 'RemoveMemberList'}'.",
                CODE_INVALID_ARGUMENT,
            )
        cid = self._guid_value(doc.get("EntityId"), "EntityId")
        with self.state.transaction():
            self._check_member_list(lid, adding=add)
            if not self.state.contact_exists(cid):
                raise self._missing("contact", cid)
            if add:
                n = self.state.add_members(lid, [cid])
                body = {
                    "@odata.context": self._context(NS + "AddMemberListResponse"),
                    "Id": listmember_id(lid, cid),
                }
                return ApiResponse(200, "", body, added=n, members_touched=1)
            n = self.state.remove_members(lid, [cid])
            return ApiResponse(204, "", removed=n, members_touched=1)
