"""One list-name template function for the API's validation and the worker's rendering."""

from __future__ import annotations

import pytest

from shared.listname import LIST_NAME_MAX, ListNameError, render_list_name


def test_escaped_braces_render_as_single_braces_everywhere() -> None:
    name = render_list_name("Promo {{2025}} {segment}", segment="VIP", export="Spring")
    assert name == "Promo {2025} VIP"


def test_placeholders_and_whitespace() -> None:
    assert render_list_name(" {export} - {segment} ", segment="VIP", export="Spring") == (
        "Spring - VIP"
    )


@pytest.mark.parametrize("template", ["{x}", "{segment!r}", "{segment:>5}", "a { b", "}"])
def test_malformed_templates_are_refused(template: str) -> None:
    with pytest.raises(ListNameError):
        render_list_name(template, segment="VIP", export="Spring")


def test_length_is_checked_once_not_truncated() -> None:
    assert len(render_list_name("{segment}", segment="v" * LIST_NAME_MAX, export="e")) == 128
    with pytest.raises(ListNameError, match="128"):
        render_list_name("{segment}!", segment="v" * LIST_NAME_MAX, export="e")
    with pytest.raises(ListNameError, match="empty"):
        render_list_name("  {segment}", segment=" ", export="e")
