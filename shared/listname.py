"""The marketing-list name template: one parser, one renderer, one length check.

An export's ``listName`` is a ``str.format``-style template with two placeholders, ``{segment}``
and ``{export}`` (the export's display name); ``{{`` and ``}}`` are literal braces. The API
validates a template by rendering it for each segment with ``render_list_name`` and the worker
names the list in Sales with the same call, so what the API accepted is what Sales receives.
"""

from __future__ import annotations

import string

LIST_NAME_MAX = 128  # Dataverse list.listname is String(128)
PLACEHOLDERS = ("segment", "export")


class ListNameError(ValueError):
    """The template is malformed, or renders to an empty or too long name."""


def template_fields(template: str) -> list[str]:
    """Placeholder names used by ``template``; ListNameError if it is malformed."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        raise ListNameError(
            "braces must form {segment} or {export} (write {{ or }} for a brace)"
        ) from None
    for _, field_name, spec, conversion in parsed:
        if field_name is None:
            continue
        if field_name not in PLACEHOLDERS or spec or conversion:
            raise ListNameError("only the placeholders {segment} and {export} are allowed")
        names.append(field_name)
    return names


def render_list_name(template: str, *, segment: str, export: str) -> str:
    """The list name Sales receives: placeholders replaced, ``{{``/``}}`` as single braces,
    surrounding whitespace dropped. ListNameError if the result is empty or longer than
    Dataverse allows (never truncated: two segments could otherwise share a name)."""
    template_fields(template)
    name = template.format(segment=segment, export=export).strip()
    if not name:
        raise ListNameError("renders to an empty name")
    if len(name) > LIST_NAME_MAX:
        raise ListNameError(f"renders to {len(name)} characters; Dataverse allows {LIST_NAME_MAX}")
    return name
