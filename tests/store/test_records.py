"""Connections, exports, export list state: CRUD, ETags, idempotent deletes, detach."""

from __future__ import annotations

import dataclasses

import pytest

from shared.errors import ConflictError, NotFoundError, PreconditionFailedError
from shared.models import (
    Audit,
    Connection,
    Credential,
    CredentialKind,
    Export,
    ExportMode,
    SegmentListState,
    UsableBy,
)
from shared.store import Store


def connection(id: str = "c1", **changes: object) -> Connection:
    c = Connection(
        id=id,
        display_name="Contoso Sales",
        server_address="https://contoso.crm.dynamics.com",
        credential=Credential(
            kind=CredentialKind.CLIENT_SECRET,
            tenant_id="tenant",
            client_id="client",
            secret_setting="CONTOSO_SECRET",
        ),
        contact_id_field="ContactId",
        usable_by=UsableBy.ADMINISTRATORS_AND_CONTRIBUTORS,
        audit=Audit(created_by="alice", created_at="2026-11-29T10:00:00Z"),
    )
    return dataclasses.replace(c, **changes)


def export(id: str = "e1", connection_id: str | None = "c1", **changes: object) -> Export:
    e = Export(
        id=id,
        display_name="Spring promo",
        connection_id=connection_id,
        segments=["High value", "Lapsed/2025"],
        mode=ExportMode.ADDITIVE,
        enabled=True,
        list_name="{export} - {segment}",
        audit=Audit(created_by="bob", updated_by="carol", updated_at="2026-11-29T11:00:00Z"),
    )
    return dataclasses.replace(e, **changes)


def test_connection_round_trip_and_etag_guard(store: Store) -> None:
    created = store.connections.create(connection())
    assert created.etag
    got = store.connections.get("c1")
    assert got == created
    assert got.credential.secret_setting == "CONTOSO_SECRET"
    assert got.usable_by is UsableBy.ADMINISTRATORS_AND_CONTRIBUTORS

    renamed = store.connections.update(dataclasses.replace(got, display_name="New"), got.etag)
    assert renamed.etag != got.etag
    with pytest.raises(PreconditionFailedError):
        store.connections.update(dataclasses.replace(got, display_name="Stale"), got.etag)
    with pytest.raises(PreconditionFailedError):
        store.connections.delete("c1", if_match=got.etag)
    assert store.connections.get("c1").display_name == "New"
    # unconditional update wins regardless of the ETag
    store.connections.update(dataclasses.replace(got, display_name="Forced"), None)
    assert [c.display_name for c in store.connections.list()] == ["Forced"]


def test_connection_create_twice_conflicts_and_delete_is_idempotent(store: Store) -> None:
    store.connections.create(connection())
    with pytest.raises(ConflictError):
        store.connections.create(connection())
    store.connections.delete("c1")
    store.connections.delete("c1")
    store.connections.delete("never-there", if_match="W/\"datetime'2026-01-01T00%3A00%3A00Z'\"")
    with pytest.raises(NotFoundError):
        store.connections.get("c1")
    with pytest.raises(NotFoundError):
        store.connections.update(connection(), None)


def test_managed_identity_connection_without_optional_fields(store: Store) -> None:
    c = connection("mi", credential=Credential(kind=CredentialKind.MANAGED_IDENTITY), audit=Audit())
    store.connections.create(c)
    got = store.connections.get("mi")
    assert got.credential == Credential(kind=CredentialKind.MANAGED_IDENTITY)
    assert got.audit == Audit()


def test_export_round_trip_list_by_connection_and_etag(store: Store) -> None:
    e1 = store.exports.create(export("e1", "c1"))
    store.exports.create(export("e2", "c2"))
    store.exports.create(export("e3", "c1", segments=[]))
    got = store.exports.get("e1")
    assert got == e1
    assert got.segments == ["High value", "Lapsed/2025"]
    assert got.mode is ExportMode.ADDITIVE
    assert sorted(e.id for e in store.exports.list("c1")) == ["e1", "e3"]
    assert sorted(e.id for e in store.exports.list()) == ["e1", "e2", "e3"]
    assert store.exports.get("e3").segments == []

    store.exports.update(dataclasses.replace(got, enabled=False), got.etag)
    with pytest.raises(PreconditionFailedError):
        store.exports.update(dataclasses.replace(got, enabled=True), got.etag)
    assert store.exports.get("e1").enabled is False


def test_detach_connection(store: Store) -> None:
    store.exports.create(export("e1", "c1"))
    store.exports.create(export("e2", "c1"))
    store.exports.create(export("e3", "c2"))
    assert store.exports.detach_connection("c1") == 2
    assert store.exports.get("e1").connection_id is None
    assert store.exports.get("e1").detached
    assert store.exports.get("e3").connection_id == "c2"
    assert store.exports.list("c1") == []
    assert store.exports.detach_connection("c1") == 0


def test_export_state_is_separate_from_the_export_etag(store: Store) -> None:
    e = store.exports.create(export())
    store.export_state.put("e1", SegmentListState("High value", "list-1", "Spring - High value"))
    store.export_state.put("e1", SegmentListState("Lapsed/2025", "list-2", "Spring - Lapsed"))
    store.export_state.put("e1", SegmentListState("High value", "list-3", "Spring - High value"))
    assert store.exports.get("e1").etag == e.etag
    state = store.export_state.get("e1")
    assert state == {
        "High value": SegmentListState("High value", "list-3", "Spring - High value"),
        "Lapsed/2025": SegmentListState("Lapsed/2025", "list-2", "Spring - Lapsed"),
    }
    store.export_state.delete("e1", "High value")
    assert set(store.export_state.get("e1")) == {"Lapsed/2025"}
    store.exports.delete("e1")
    assert store.export_state.get("e1") == {}
    store.exports.delete("e1")
