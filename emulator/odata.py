"""A small, strict OData subset: errors, $filter / $select / $top parsing, Prefer, $skiptoken.

Supported $filter grammar (anything else is a 400, never a guess):
    expr    := primary ("and" primary)*
    primary := "(" expr ")" | prop "eq" literal
             | "Microsoft.Dynamics.CRM.In(PropertyName=" name ",PropertyValues=" values ")"
    literal := 'string' (with '' escaping) | integer | true | false | null | bare GUID | @alias
    name    := 'prop' | @alias          values := ['a','b'] | @alias  (alias value: JSON ["a","b"])
Literals are type-checked against the property (a quoted GUID for a Guid property is a 400, like
Dataverse's "incompatible types" error).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from emulator.data import normalize_guid

# Error codes (Web API hex form). Chosen from Dataverse's documented/observed codes.
CODE_QUERY = "0x80060888"  # OData URL/query syntax, unknown segment or property
CODE_INVALID_ARGUMENT = "0x80040203"
CODE_VALIDATION = "0x80044331"
CODE_NOT_FOUND = "0x80040217"  # ObjectDoesNotExist
CODE_DUPLICATE = "0x80040237"
CODE_UNAUTHORIZED = "0x80040220"
CODE_REQUESTS = "0x80072322"
CODE_EXECUTION_TIME = "0x80072321"
CODE_CONCURRENCY = "0x80072326"
CODE_UNAVAILABLE = "0x80040216"

MAX_PAGE_SIZE = 5000


class ApiError(Exception):
    """An error answered as ``{"error": {"code": ..., "message": ...}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(message: str, code: str = CODE_QUERY) -> ApiError:
    return ApiError(400, code, message)


def unsupported(what: str) -> ApiError:
    """501: a documented feature the emulator does not emulate (not a client error)."""
    return ApiError(501, CODE_QUERY, f"The Dataverse emulator does not support {what}.")


# ---- literals and $filter ---------------------------------------------------------------------
GUID = "guid"
INT = "int"
BOOL = "bool"
STRING = "string"


@dataclass(frozen=True)
class Eq:
    prop: str
    value: Any  # already converted to the property's Python type


@dataclass(frozen=True)
class In:
    prop: str
    values: tuple[Any, ...]
    # The values as a set, built once: a query re-checks its In on every row it looks at
    # (emulator/filters.py). None when a value is unhashable (then the values are scanned).
    value_set: frozenset[Any] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            values: frozenset[Any] | None = frozenset(self.values)
        except TypeError:
            values = None
        object.__setattr__(self, "value_set", values)


@dataclass(frozen=True)
class Ne:
    prop: str
    value: Any


@dataclass(frozen=True)
class Or:
    """Any of the groups holds; each group is conditions joined by 'and'."""

    groups: tuple[tuple[Condition, ...], ...]


Condition = Eq | In | Ne | Or

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-]))
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>-?\d+(?![\w.]))
  | (?P<alias>@[A-Za-z_]\w*)
  | (?P<ident>[A-Za-z_][\w.]*)
  | (?P<punct>[(),=\[\]])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


def _tokenize(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise bad_request(f"Syntax error at position {pos} in '$filter'.")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(_Tok(kind, m.group()))
        pos = m.end()
    return out


@dataclass(frozen=True)
class _Lit:
    kind: str  # guid | string | number | true | false | null | array
    value: Any


class FilterParser:
    def __init__(self, text: str, aliases: dict[str, str], props: dict[str, str], entity: str):
        self.toks = _tokenize(text)
        self.pos = 0
        self.aliases = aliases
        self.props = props
        self.entity = entity

    def parse(self) -> list[Condition]:
        conds = self._expr()
        if self.pos != len(self.toks):
            raise self._unexpected()
        return conds

    def _peek(self) -> _Tok | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def _next(self) -> _Tok:
        tok = self._peek()
        if tok is None:
            raise bad_request("Unexpected end of '$filter'.")
        self.pos += 1
        return tok

    def _expect(self, text: str) -> None:
        tok = self._next()
        if tok.text != text:
            raise bad_request(
                f"Syntax error in '$filter': expected '{text}' but found '{tok.text}'."
            )

    def _unexpected(self) -> ApiError:
        tok = self._peek()
        word = tok.text if tok else "end"
        if tok is not None and tok.text.lower() in {"not", "gt", "ge", "lt", "le"}:
            return unsupported(f"'{tok.text}' in $filter (only 'eq', 'ne', 'and', 'or' and In)")
        return bad_request(f"Syntax error in '$filter' at '{word}'.")

    def _expr(self) -> list[Condition]:
        """'and' binds tighter than 'or' (OData); a single group is returned flat."""
        groups = [self._and()]
        while (tok := self._peek()) is not None and tok.text == "or":
            self.pos += 1
            groups.append(self._and())
        if len(groups) == 1:
            return groups[0]
        return [Or(tuple(tuple(g) for g in groups))]

    def _and(self) -> list[Condition]:
        conds = self._primary()
        while (tok := self._peek()) is not None and tok.text == "and":
            self.pos += 1
            conds += self._primary()
        return conds

    def _primary(self) -> list[Condition]:
        tok = self._next()
        if tok.text == "(":
            conds = self._expr()
            self._expect(")")
            return conds
        if tok.kind != "ident":
            self.pos -= 1
            raise self._unexpected()
        if tok.text == "Microsoft.Dynamics.CRM.In":
            return [self._in()]
        if "." in tok.text or "/" in tok.text:
            raise unsupported(f"the function or path '{tok.text}' in $filter")
        op = self._peek()
        if tok.text == "not" or (op is not None and op.text == "("):  # not, contains(), ...
            raise unsupported(f"the function or operator '{tok.text}' in $filter")
        if op is None or op.text not in ("eq", "ne"):
            raise self._unexpected()
        self.pos += 1
        prop = self._prop(tok.text)
        lit = self._literal()
        value = self._convert(prop, lit)
        return [Eq(prop, value) if op.text == "eq" else Ne(prop, value)]

    def _prop(self, name: str) -> str:
        if name not in self.props:
            raise bad_request(
                f"Could not find a property named '{name}' on type "
                f"'Microsoft.Dynamics.CRM.{self.entity}'."
            )
        return name

    def _in(self) -> In:
        self._expect("(")
        self._expect("PropertyName")
        self._expect("=")
        name = self._literal()
        if name.kind != "string":
            raise bad_request("PropertyName of Microsoft.Dynamics.CRM.In must be a string.")
        self._expect(",")
        self._expect("PropertyValues")
        self._expect("=")
        values = self._literal()
        self._expect(")")
        prop = self._prop(name.value)
        if values.kind != "array":
            raise bad_request("PropertyValues of Microsoft.Dynamics.CRM.In must be a collection.")
        if not values.value:
            raise bad_request("PropertyValues of Microsoft.Dynamics.CRM.In must not be empty.")
        converted = []
        for item in values.value:
            if not isinstance(item, str):
                raise bad_request("PropertyValues of Microsoft.Dynamics.CRM.In must be strings.")
            converted.append(self._from_string(prop, item))
        return In(prop, tuple(converted))

    def _literal(self) -> _Lit:
        tok = self._next()
        if tok.kind == "alias":
            if tok.text not in self.aliases:
                raise bad_request(f"The parameter alias '{tok.text}' is not defined in the query.")
            return _alias_literal(self.aliases[tok.text])
        if tok.text == "[":
            items: list[str] = []
            while True:
                item = self._next()
                if item.kind != "string":
                    raise bad_request("Collection literals must contain quoted strings.")
                items.append(item.text[1:-1].replace("''", "'"))
                sep = self._next()
                if sep.text == "]":
                    return _Lit("array", items)
                if sep.text != ",":
                    raise bad_request("Syntax error in a collection literal.")
        return _token_literal(tok)

    def _convert(self, prop: str, lit: _Lit) -> Any:
        ptype = self.props[prop]
        if lit.kind == "null":
            raise unsupported("null literals in $filter")
        ok = {
            GUID: lit.kind == "guid",
            INT: lit.kind == "number",
            BOOL: lit.kind in ("true", "false"),
            STRING: lit.kind == "string",
        }[ptype]
        if not ok:
            raise bad_request(
                f"A binary operator with incompatible types was detected. Found operand types "
                f"'{_EDM[ptype]}' and '{_LIT_EDM.get(lit.kind, lit.kind)}' for operator kind "
                "'Equal'."
            )
        if ptype == GUID:
            return str(lit.value).lower()
        return lit.value

    def _from_string(self, prop: str, text: str) -> Any:
        ptype = self.props[prop]
        if ptype == GUID:
            guid = normalize_guid(text)
            if guid is None:
                raise bad_request(f"'{text}' is not a valid Guid value for '{prop}'.")
            return guid
        if ptype == INT:
            try:
                return int(text)
            except ValueError as exc:
                raise bad_request(f"'{text}' is not a valid integer for '{prop}'.") from exc
        if ptype == BOOL:
            if text not in ("true", "false"):
                raise bad_request(f"'{text}' is not a valid boolean for '{prop}'.")
            return text == "true"
        return text


_EDM = {GUID: "Edm.Guid", INT: "Edm.Int32", BOOL: "Edm.Boolean", STRING: "Edm.String"}
_LIT_EDM = {
    "guid": "Edm.Guid",
    "number": "Edm.Int32",
    "string": "Edm.String",
    "true": "Edm.Boolean",
    "false": "Edm.Boolean",
}


def _token_literal(tok: _Tok) -> _Lit:
    if tok.kind == "string":
        return _Lit("string", tok.text[1:-1].replace("''", "'"))
    if tok.kind == "guid":
        return _Lit("guid", tok.text.lower())
    if tok.kind == "number":
        return _Lit("number", int(tok.text))
    if tok.kind == "ident" and tok.text in ("true", "false", "null"):
        return _Lit(tok.text, {"true": True, "false": False, "null": None}[tok.text])
    raise bad_request(f"Syntax error in '$filter': '{tok.text}' is not a literal.")


def _alias_literal(text: str) -> _Lit:
    text = text.strip()
    if text.startswith("["):
        # Collection aliases are JSON arrays (double-quoted strings), as in Microsoft's examples.
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise bad_request("A parameter alias collection must be a JSON array.") from exc
        if not isinstance(items, list):
            raise bad_request("A parameter alias collection must be a JSON array.")
        return _Lit("array", items)
    toks = _tokenize(text)
    if len(toks) != 1:
        raise bad_request(f"Invalid parameter alias value '{text}'.")
    return _token_literal(toks[0])


def parse_filter(
    text: str, aliases: dict[str, str], props: dict[str, str], entity: str
) -> list[Condition]:
    if not text.strip():
        raise bad_request("The $filter expression must not be empty.")
    return FilterParser(text, aliases, props, entity).parse()


def parse_select(text: str | None, props: tuple[str, ...], entity: str) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    for name in names:
        if name not in props:
            raise bad_request(
                f"Could not find a property named '{name}' on type "
                f"'Microsoft.Dynamics.CRM.{entity}'."
            )
    return names


def parse_top(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or int(text) < 1:
        raise bad_request(f"Invalid value '{text}' for $top.")
    return int(text)


# ---- Prefer -----------------------------------------------------------------------------------
@dataclass
class Preferences:
    return_representation: bool = False
    max_page_size: int | None = None
    continue_on_error: bool = False
    include_annotations: str | None = None


def parse_prefer(values: list[str], max_page_size: int = MAX_PAGE_SIZE) -> Preferences:
    prefs = Preferences()
    for header in values:
        for raw in _split_prefer(header):
            name, _, value = raw.partition("=")
            name, value = name.strip().lower(), value.strip()
            if name == "return" and value == "representation":
                prefs.return_representation = True
            elif name == "odata.maxpagesize":
                if not value.isdigit() or int(value) < 1:
                    raise bad_request(f"Invalid odata.maxpagesize preference '{value}'.")
                # Default and maximum are 5,000 [S6]; larger requests get the maximum.
                prefs.max_page_size = min(int(value), max_page_size)
            elif name == "odata.continue-on-error":
                prefs.continue_on_error = value in ("", "true")
            elif name == "odata.include-annotations":
                prefs.include_annotations = value
            # Other preferences may be ignored (RFC 7240).
    return prefs


def _split_prefer(header: str) -> list[str]:
    parts, cur, quoted = [], "", False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in (x.strip() for x in parts) if p]


# ---- $skiptoken -------------------------------------------------------------------------------
def make_skiptoken(query_key: str, position: str) -> str:
    """Opaque continuation bound to the query it came from."""
    raw = json.dumps({"q": _digest(query_key), "p": position}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_skiptoken(token: str, query_key: str) -> str:
    try:
        padded = token + "=" * (-len(token) % 4)
        doc = json.loads(base64.urlsafe_b64decode(padded.encode()))
        ok = (
            isinstance(doc, dict)
            and doc.get("q") == _digest(query_key)
            and isinstance(doc.get("p"), str)
        )
    except ValueError:
        ok = False
    if not ok:
        raise bad_request("The $skiptoken is invalid or does not belong to this query.")
    return str(doc["p"])


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
