"""Form fields for the parts of an API input schema the console does not know by name.

The API grows (an export's ``source``, ``schedule`` ...); the console reads the OpenAPI schema and
offers any extra simple field (enums, strings, numbers, booleans, and objects chosen by ``kind``)
so a new field is editable without a console change. Pure: takes the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SchemaField:
    name: str  # dotted API path, also the form field's name
    label: str
    widget: str  # "select" | "text" | "number"
    options: list[str] = field(default_factory=list)
    hint: str = ""
    type: str = "string"


def _resolve(doc: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        return dict(doc.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[1], {}))
    return schema


def _variants(doc: Mapping[str, Any], schema: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    schema = _resolve(doc, schema)
    for key in ("oneOf", "anyOf"):
        if key in schema:
            out: list[Mapping[str, Any]] = []
            for option in schema[key]:
                resolved = _resolve(doc, option)
                if resolved.get("type") == "null":
                    continue
                out += (
                    _variants(doc, resolved)
                    if ("oneOf" in resolved or "anyOf" in resolved)
                    else [resolved]
                )
            return out
    return [schema]


def _label(name: str) -> str:
    words = "".join(" " + c.lower() if c.isupper() else c for c in name.split(".")[-1])
    return words.strip().capitalize()


def _scalar(doc: Mapping[str, Any], name: str, schema: Mapping[str, Any]) -> SchemaField | None:
    variants = _variants(doc, schema)
    enum: list[str] = []
    types = set()
    for v in variants:
        if "enum" in v:
            enum += [str(e) for e in v["enum"]]
        if "const" in v:
            enum.append(str(v["const"]))
        types.add(v.get("type"))
    hint = str(schema.get("description") or "")
    if enum:
        return SchemaField(name, _label(name), "select", list(dict.fromkeys(enum)), hint)
    if types <= {"boolean"}:
        return SchemaField(name, _label(name), "select", ["true", "false"], hint, "boolean")
    if types <= {"integer", "number"}:
        return SchemaField(name, _label(name), "number", [], hint, "integer")
    if types <= {"string"}:
        return SchemaField(name, _label(name), "text", [], hint)
    return None


def extra_fields(doc: Mapping[str, Any], model: str, known: set[str]) -> list[SchemaField]:
    schema = doc.get("components", {}).get("schemas", {}).get(model, {})
    out: list[SchemaField] = []
    for prop, sub in (schema.get("properties") or {}).items():
        if prop in known:
            continue
        objects = [v for v in _variants(doc, sub) if v.get("type") == "object" or "properties" in v]
        if not objects:
            scalar = _scalar(doc, prop, sub)
            if scalar is not None:
                out.append(scalar)
            continue
        # Objects: one field per property across the variants ("kind" first, as a choice).
        props: dict[str, list[Mapping[str, Any]]] = {}
        for variant in objects:
            for key, value in (variant.get("properties") or {}).items():
                props.setdefault(key, []).append(value)
        for key in sorted(props, key=lambda k: (k != "kind", k)):
            merged = {"anyOf": props[key]} if len(props[key]) > 1 else props[key][0]
            scalar = _scalar(doc, f"{prop}.{key}", merged)
            if scalar is not None:
                scalar.label = f"{_label(prop)}: {_label(key).lower()}"
                out.append(scalar)
    return out


def values_of(document: Mapping[str, Any] | None, fields: list[SchemaField]) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in fields:
        value: Any = document or {}
        for part in f.name.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is not None:
            out[f.name] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def submitted(form: Mapping[str, Any], fields: list[SchemaField]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields:
        raw = form.get(f.name)
        if not isinstance(raw, str) or raw.strip() == "":
            continue
        value: Any = raw.strip()
        if f.type == "boolean":
            value = value == "true"
        elif f.type == "integer":
            value = int(value) if value.lstrip("-").isdigit() else value  # else the API says
        out[f.name] = value
    return out
