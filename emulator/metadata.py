"""Entity metadata (`EntityDefinitions`) for the tables the emulator holds: contact, list and
listmember.

Serves what Microsoft's Python SDK (PowerPlatform-Dataverse-Client) reads before it touches
data: the entity set and primary id of a table by logical name
(`EntityDefinitions?$select=LogicalName,EntitySetName,PrimaryIdAttribute&$filter=LogicalName eq
'contact'`), one entity by key (`EntityDefinitions(LogicalName='list')`), its attributes, and its
picklist attributes with their options (`.../Attributes/Microsoft.Dynamics.CRM.
PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)`), which the SDK
reads before a create to turn option labels into values. Names and values follow the table
references (contact, list, listmember). Metadata is read-only here: changing it, and query
options other than the ones above, answer 501 (not emulated).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from emulator.odata import CODE_QUERY, ApiError, bad_request, unsupported

PATH = "EntityDefinitions"
_NS = "Microsoft.Dynamics.CRM."
_ID_NAMESPACE = uuid.UUID("6f1c0d5e-8d0b-4b8e-9a57-3d0e3c6a9a11")
_LANGUAGE = 1033


@dataclass(frozen=True)
class Attribute:
    logical: str
    kind: str  # AttributeType: Uniqueidentifier, String, Memo, Integer, Boolean, Picklist, ...
    max_length: int | None = None
    options: tuple[tuple[int, str], ...] = ()  # picklist / state / status (value, label)

    def metadata_type(self) -> str:
        name = {
            "Uniqueidentifier": "UniqueIdentifier",
            "String": "String",
            "Memo": "Memo",
            "Integer": "Integer",
            "Boolean": "Boolean",
            "Picklist": "Picklist",
            "State": "State",
            "Status": "Status",
            "Lookup": "Lookup",
            "DateTime": "DateTime",
        }[self.kind]
        return f"{_NS}{name}AttributeMetadata"


@dataclass(frozen=True)
class Entity:
    logical: str
    schema: str
    entity_set: str
    primary_id: str
    primary_name: str
    object_type_code: int
    attributes: tuple[Attribute, ...]


def _state(active: str, inactive: str) -> tuple[tuple[int, str], ...]:
    return ((0, active), (1, inactive))


ENTITIES: dict[str, Entity] = {
    e.logical: e
    for e in (
        Entity(
            "contact",
            "Contact",
            "contacts",
            "contactid",
            "fullname",
            2,
            (
                Attribute("contactid", "Uniqueidentifier"),
                Attribute("firstname", "String", 50),
                Attribute("lastname", "String", 50),
                Attribute("fullname", "String", 160),
                Attribute("emailaddress1", "String", 100),
                Attribute("statecode", "State", options=_state("Active", "Inactive")),
                Attribute("statuscode", "Status", options=((1, "Active"), (2, "Inactive"))),
            ),
        ),
        Entity(
            "list",
            "List",
            "lists",
            "listid",
            "listname",
            4300,
            (
                Attribute("listid", "Uniqueidentifier"),
                Attribute("listname", "String", 128),
                Attribute(
                    "createdfromcode",
                    "Picklist",
                    options=((1, "Account"), (2, "Contact"), (4, "Lead")),
                ),
                Attribute("type", "Boolean"),
                Attribute("membertype", "Integer"),
                Attribute("statecode", "State", options=_state("Active", "Inactive")),
                Attribute("statuscode", "Status", options=((0, "Active"), (1, "Inactive"))),
                Attribute("lockstatus", "Boolean"),
                Attribute("description", "Memo", 2000),
                Attribute("purpose", "String", 512),
                Attribute("source", "String", 128),
                Attribute("membercount", "Integer"),
                Attribute("createdon", "DateTime"),
            ),
        ),
        Entity(
            "listmember",
            "ListMember",
            "listmembers",
            "listmemberid",
            "name",
            4301,
            (
                Attribute("listmemberid", "Uniqueidentifier"),
                Attribute("listid", "Lookup"),
                Attribute("entityid", "Lookup"),
                Attribute("entitytype", "String", 100),
            ),
        ),
    )
}

_KEY = r"\((?:LogicalName='(?P<{0}>[^']*)'|(?P<{1}>[0-9a-fA-F-]{{36}}))\)"
_ROUTE = re.compile(
    rf"^{PATH}(?:{_KEY.format('entity', 'entity_id')})?"
    rf"(?:/Attributes(?:{_KEY.format('attribute', 'attribute_id')}"
    rf"|/(?P<cast>{re.escape(_NS)}\w+))?)?$"
)
_FILTER = re.compile(r"^\s*LogicalName\s+eq\s+'((?:[^']|'')*)'\s*$")
_PICKLIST_EXPAND = re.compile(r"^OptionSet(\(\$select=Options\))?$")


def metadata_id(*parts: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, "/".join(parts)))


def _label(text: str) -> dict[str, Any]:
    localized = {"Label": text, "LanguageCode": _LANGUAGE, "IsManaged": True}
    return {"LocalizedLabels": [localized], "UserLocalizedLabel": localized}


def _entity_row(e: Entity) -> dict[str, Any]:
    return {
        "MetadataId": metadata_id(e.logical),
        "LogicalName": e.logical,
        "SchemaName": e.schema,
        "EntitySetName": e.entity_set,
        "LogicalCollectionName": e.entity_set,
        "PrimaryIdAttribute": e.primary_id,
        "PrimaryNameAttribute": e.primary_name,
        "ObjectTypeCode": e.object_type_code,
        "IsCustomEntity": False,
        "DisplayName": _label(e.schema),
    }


def _attribute_row(e: Entity, a: Attribute, *, with_options: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "@odata.type": "#" + a.metadata_type(),
        "MetadataId": metadata_id(e.logical, a.logical),
        "LogicalName": a.logical,
        "SchemaName": a.logical,
        "EntityLogicalName": e.logical,
        "AttributeType": a.kind,
        "IsPrimaryId": a.logical == e.primary_id,
        "IsPrimaryName": a.logical == e.primary_name,
        "IsCustomAttribute": False,
    }
    if a.max_length is not None:
        row["MaxLength"] = a.max_length
    if with_options and a.options:
        row["OptionSet"] = {
            "MetadataId": metadata_id(e.logical, a.logical, "options"),
            "Options": [{"Value": v, "Label": _label(text)} for v, text in a.options],
        }
    return row


def is_metadata_path(path: str) -> bool:
    return path == PATH or path.startswith((PATH + "(", PATH + "/"))


class Metadata:
    def __init__(self, service_root: str) -> None:
        self.service_root = service_root

    def handle(self, method: str, path: str, query: str) -> dict[str, Any]:
        """The JSON body of a metadata read; ApiError otherwise."""
        if method != "GET":
            raise unsupported(f"{method} on {PATH} (metadata changes are not emulated)")
        m = _ROUTE.match(path)
        if m is None:
            raise unsupported(f"the metadata path '{path}'")
        options = _options(query)
        entity = _find_entity(m.group("entity"), m.group("entity_id"))
        if entity is None:
            return self._entities(options)
        if "/Attributes" not in path:
            _allow(options, "$select")
            return self._one(f"{PATH}/$entity", _project(_entity_row(entity), options))
        cast = m.group("cast")
        attribute_key = m.group("attribute") or m.group("attribute_id")
        if attribute_key is not None:
            _allow(options, "$select")
            found = _find_attribute(entity, m.group("attribute"), m.group("attribute_id"))
            row = _attribute_row(entity, found, with_options=False)
            return self._one(f"{PATH}({entity.logical})/Attributes/$entity", _project(row, options))
        if cast is not None:
            if cast != f"{_NS}PicklistAttributeMetadata":
                raise unsupported(f"the attribute cast '{cast}'")
            _allow(options, "$select", "$expand")
            expand = options.get("$expand")
            if expand is not None and not _PICKLIST_EXPAND.match(expand):
                raise unsupported(f"$expand={expand} on picklist metadata")
            rows = [
                _project(_attribute_row(entity, a, with_options=expand is not None), options)
                for a in entity.attributes
                if a.kind == "Picklist"
            ]
            return self._many(f"{PATH}({entity.logical})/Attributes/{cast}", rows)
        _allow(options, "$select", "$filter")
        attributes = list(entity.attributes)
        if "$filter" in options:
            name = _filter_name(options["$filter"])
            attributes = [a for a in attributes if a.logical == name]
        rows = [
            _project(_attribute_row(entity, a, with_options=False), options) for a in attributes
        ]
        return self._many(f"{PATH}({entity.logical})/Attributes", rows)

    def _entities(self, options: dict[str, str]) -> dict[str, Any]:
        _allow(options, "$select", "$filter")
        entities = list(ENTITIES.values())
        if "$filter" in options:
            name = _filter_name(options["$filter"])
            entities = [e for e in entities if e.logical == name]
        return self._many(PATH, [_project(_entity_row(e), options) for e in entities])

    def _one(self, fragment: str, row: dict[str, Any]) -> dict[str, Any]:
        return {"@odata.context": f"{self.service_root}$metadata#{fragment}", **row}

    def _many(self, fragment: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {"@odata.context": f"{self.service_root}$metadata#{fragment}", "value": rows}


def _options(query: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in query.split("&") if query else []:
        if not raw:
            continue
        key, _, value = raw.partition("=")
        key = unquote_plus(key)
        if key in out:
            raise bad_request(f"Query option '{key}' is specified more than once.")
        out[key] = unquote_plus(value)
    return out


def _allow(options: dict[str, str], *allowed: str) -> None:
    for key in options:
        if key not in allowed:
            raise unsupported(f"the query option '{key}' on {PATH}")


def _filter_name(text: str) -> str:
    m = _FILTER.match(text)
    if m is None:
        raise unsupported(f"the metadata filter '{text}' (only LogicalName eq '<name>')")
    return m.group(1).replace("''", "'").lower()


def _project(row: dict[str, Any], options: dict[str, str]) -> dict[str, Any]:
    select = options.get("$select")
    if not select:
        return row
    names = [n.strip() for n in select.split(",") if n.strip()]
    out = {k: v for k, v in row.items() if k.startswith("@odata.")}
    for name in names:
        if name not in row and name != "OptionSet":
            raise bad_request(
                f"Could not find a property named '{name}' on type '{_NS}"
                f"{'EntityMetadata' if 'EntitySetName' in row else 'AttributeMetadata'}'.",
                CODE_QUERY,
            )
        if name in row:
            out[name] = row[name]
    if "OptionSet" in row:
        out["OptionSet"] = row["OptionSet"]  # an $expand, not a $select
    return out


def _find_entity(logical: str | None, entity_id: str | None) -> Entity | None:
    if logical is None and entity_id is None:
        return None
    for e in ENTITIES.values():
        if (logical is not None and e.logical == logical.lower()) or (
            entity_id is not None and metadata_id(e.logical) == entity_id.lower()
        ):
            return e
    key = f"LogicalName='{logical}'" if logical is not None else entity_id
    raise ApiError(
        404,
        "0x80040217",
        f"Could not find an entity with key {key} (the emulator holds "
        "contact, list and listmember).",
    )


def _find_attribute(e: Entity, logical: str | None, attribute_id: str | None) -> Attribute:
    for a in e.attributes:
        if (logical is not None and a.logical == logical.lower()) or (
            attribute_id is not None and metadata_id(e.logical, a.logical) == attribute_id.lower()
        ):
            return a
    raise ApiError(
        404, "0x80040217", f"Could not find an attribute {logical or attribute_id} on {e.logical}."
    )
