"""API schemas (pydantic, camelCase on the wire) and their conversion from/to domain records.

Input models forbid unknown fields and accept only the camelCase names. Output models are
built from the domain dataclasses; they never carry a secret (a connection holds only the NAME
of the app setting with its secret).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)
from pydantic.alias_generators import to_camel

from shared import ncrontab
from shared.listname import LIST_NAME_MAX, template_fields
from shared.models import (
    Audit,
    Connection,
    ContactIdSource,
    Credential,
    CredentialKind,
    Export,
    ExportMode,
    ExportSource,
    NotificationFormat,
    NotificationTarget,
    Schedule,
    ScheduleKind,
    SignIn,
    SignInStatus,
    SourceKind,
    UsableBy,
)
from shared.names import clean_name
from shared.secrets_rule import secret_setting_problem

GUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
DOMAIN_PATTERN = r"^(?=.{4,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
SETTING_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
RESOURCE_ID_PATTERN = r"^[0-9a-f]{32}$"  # connection and export ids: uuid4 hex
RUN_ID_PATTERN = r"^[0-9A-Za-z-]{1,64}$"
# Segment names become Table keys: no / \ # ? and no control characters.
SEGMENT_NAME_PATTERN = r"^[^/\\#?\x00-\x1f\x7f-\x9f]{1,100}$"
MAX_SEGMENTS = 50


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _lower(value: str) -> str:
    return value.lower()


DisplayName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100),
    AfterValidator(clean_name),
    AfterValidator(_not_blank),
]
Guid = Annotated[str, StringConstraints(pattern=GUID_PATTERN), AfterValidator(_lower)]


def _tenant(value: str) -> str:
    if re.match(GUID_PATTERN, value) or re.match(DOMAIN_PATTERN, value):
        return value.lower()
    raise ValueError("must be a tenant GUID or a domain such as contoso.onmicrosoft.com")


TenantId = Annotated[str, StringConstraints(min_length=1, max_length=253), AfterValidator(_tenant)]
SettingName = Annotated[str, StringConstraints(pattern=SETTING_NAME_PATTERN)]


def _secret_setting(value: str) -> str:
    problem = secret_setting_problem(value)
    if problem:
        raise ValueError(problem)
    return value


# A connection's secretSetting: shared.secrets_rule (the same rule the run time applies).
SecretSettingName = Annotated[
    str, StringConstraints(pattern=SETTING_NAME_PATTERN), AfterValidator(_secret_setting)
]
ColumnName = Annotated[str, StringConstraints(pattern=COLUMN_PATTERN)]
ResourceId = Annotated[str, StringConstraints(pattern=RESOURCE_ID_PATTERN)]
SegmentName = Annotated[
    str,
    StringConstraints(pattern=SEGMENT_NAME_PATTERN),
    AfterValidator(clean_name),
    AfterValidator(_not_blank),
]


class InputModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_alias=True, validate_by_name=False, extra="forbid"
    )


class OutputModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=True,
        from_attributes=True,
        serialize_by_alias=True,
    )


# --- connections -------------------------------------------------------------------------------


class ClientSecretCredentialIn(InputModel):
    kind: Literal["client-secret"]
    tenant_id: TenantId
    client_id: Guid
    secret_setting: SecretSettingName = Field(
        description="NAME of the app setting (or Key Vault reference) holding the client secret; "
        "never the secret itself"
    )


class DelegatedCredentialIn(InputModel):
    """A Sales user signs in (POST /api/connections/{id}/sign-in) and runs act as that user.
    The app registration is a confidential web app: its secret is read from ``secretSetting``."""

    kind: Literal["delegated"]
    tenant_id: TenantId
    client_id: Guid
    secret_setting: SecretSettingName = Field(
        description="NAME of the app setting (or Key Vault reference) holding the app "
        "registration's client secret; never the secret itself"
    )


class ManagedIdentityCredentialIn(InputModel):
    kind: Literal["managed-identity"]
    client_id: Guid | None = Field(
        default=None, description="user-assigned identity's client id; omit for system-assigned"
    )


CredentialIn = Annotated[
    ClientSecretCredentialIn | ManagedIdentityCredentialIn | DelegatedCredentialIn,
    Field(discriminator="kind"),
]


class ConnectionIn(InputModel):
    display_name: DisplayName
    type: Literal["dynamics365-sales"] = "dynamics365-sales"
    usable_by: UsableBy = UsableBy.ADMINISTRATORS
    server_address: Annotated[str, StringConstraints(min_length=1, max_length=2048)] = Field(
        description="https://<org>.crm.dynamics.com (an allowed Dynamics 365 host)"
    )
    credential: CredentialIn
    contact_id_field: ColumnName = Field(
        description="customer column that holds the Dynamics 365 contact ID (a Customer "
        "Insights source: the unified profile's column)"
    )
    contact_id_source: ContactIdSource = Field(
        default=ContactIdSource.COLUMN,
        description="how a Customer Insights source finds contact IDs: 'column' (the profile "
        "column named by contactIdField) or 'alternate-key' (msdynci_alternatekeys, entity "
        "contact)",
    )


class CredentialPatch(InputModel):
    kind: Literal["client-secret", "managed-identity", "delegated"] | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    secret_setting: str | None = None


class ConnectionPatch(InputModel):
    """JSON merge patch (RFC 7396): fields present replace, ``null`` clears an optional field.
    The merged connection is validated as a whole."""

    display_name: str | None = None
    type: str | None = None
    usable_by: str | None = None
    server_address: str | None = None
    credential: CredentialPatch | None = None
    contact_id_field: str | None = None
    contact_id_source: str | None = None


class CredentialOut(OutputModel):
    kind: CredentialKind
    tenant_id: str | None = None
    client_id: str | None = None
    secret_setting: str | None = None


class AuditOut(OutputModel):
    created_by: str = ""
    created_at: str = ""
    updated_by: str = ""
    updated_at: str = ""


class SignInOut(OutputModel):
    """Who signed a delegated connection in, and whether runs can still use the session. The
    token cache itself never leaves the server."""

    status: SignInStatus
    account: str = ""
    signed_in_at: str = ""
    reason: str = ""


class ConnectionOut(AuditOut):
    id: str
    display_name: str
    type: str
    usable_by: UsableBy
    server_address: str
    credential: CredentialOut
    contact_id_field: str
    contact_id_source: ContactIdSource = ContactIdSource.COLUMN
    sign_in: SignInOut | None = Field(
        default=None,
        description="delegated connections only: null until someone signs in",
    )


class SignInStartIn(InputModel):
    redirect_uri: Annotated[str, StringConstraints(min_length=8, max_length=2048)] = Field(
        description="where the authority sends the browser back (registered on the app)"
    )


class SignInStartOut(OutputModel):
    authorize_url: str
    flow: str = Field(description="opaque, encrypted; send it back with the answer")


class SignInCompleteIn(InputModel):
    flow: Annotated[str, StringConstraints(min_length=1, max_length=16384)]
    query: dict[
        Annotated[str, StringConstraints(max_length=64)],
        Annotated[str, StringConstraints(max_length=8192)],
    ] = Field(description="the query parameters the authority sent back (code, state, ...)")


class ConnectionSummary(OutputModel):
    """What contributors and viewers see of a connection."""

    id: str
    display_name: str
    type: str


class ConnectionList(OutputModel):
    items: list[ConnectionOut | ConnectionSummary]


class ConnectionInUse(OutputModel):
    id: str
    display_name: str


class ProbeCheckOut(OutputModel):
    name: str
    ok: bool
    detail: str


class ConnectionTestOut(OutputModel):
    ok: bool
    checks: list[ProbeCheckOut]


def credential_from_input(
    value: ClientSecretCredentialIn | ManagedIdentityCredentialIn | DelegatedCredentialIn,
) -> Credential:
    if isinstance(value, ClientSecretCredentialIn | DelegatedCredentialIn):
        return Credential(
            kind=CredentialKind(value.kind),
            tenant_id=value.tenant_id,
            client_id=value.client_id,
            secret_setting=value.secret_setting,
        )
    return Credential(kind=CredentialKind.MANAGED_IDENTITY, client_id=value.client_id)


def connection_input_dict(connection: Connection) -> dict[str, Any]:
    """The connection as the camelCase input document (for merge patching)."""
    cred: dict[str, Any] = {"kind": connection.credential.kind.value}
    if connection.credential.kind in (CredentialKind.CLIENT_SECRET, CredentialKind.DELEGATED):
        cred.update(
            tenantId=connection.credential.tenant_id,
            clientId=connection.credential.client_id,
            secretSetting=connection.credential.secret_setting,
        )
    elif connection.credential.client_id:
        cred["clientId"] = connection.credential.client_id
    return {
        "displayName": connection.display_name,
        "type": connection.type,
        "usableBy": connection.usable_by.value,
        "serverAddress": connection.server_address,
        "credential": cred,
        "contactIdField": connection.contact_id_field,
        "contactIdSource": connection.contact_id_source.value,
    }


def _audit(audit: Audit) -> dict[str, str]:
    return {
        "created_by": audit.created_by,
        "created_at": audit.created_at,
        "updated_by": audit.updated_by,
        "updated_at": audit.updated_at,
    }


def connection_out(connection: Connection, signin: SignIn | None = None) -> ConnectionOut:
    cred = connection.credential
    sign_in = None
    if signin is not None and cred.kind is CredentialKind.DELEGATED:
        sign_in = SignInOut(
            status=signin.status,
            account=signin.account,
            signed_in_at=signin.signed_in_at,
            reason=signin.reason,
        )
    return ConnectionOut(
        id=connection.id,
        display_name=connection.display_name,
        type=connection.type,
        usable_by=connection.usable_by,
        server_address=connection.server_address,
        credential=CredentialOut(
            kind=cred.kind,
            tenant_id=cred.tenant_id,
            client_id=cred.client_id,
            secret_setting=cred.secret_setting,
        ),
        contact_id_field=connection.contact_id_field,
        sign_in=sign_in,
        contact_id_source=connection.contact_id_source,
        **_audit(connection.audit),
    )


def connection_summary(connection: Connection) -> ConnectionSummary:
    return ConnectionSummary(
        id=connection.id, display_name=connection.display_name, type=connection.type
    )


# --- exports -----------------------------------------------------------------------------------


def _template(value: str) -> str:
    template_fields(value)  # ListNameError (a ValueError) names what is wrong
    return value


ListNameTemplate = Annotated[
    str,
    StringConstraints(min_length=1, max_length=512),
    AfterValidator(_not_blank),
    AfterValidator(_template),
]


def _ncrontab(value: str) -> str:
    try:
        return ncrontab.parse(value).expression
    except ncrontab.CrontabError as exc:
        raise ValueError(f"not a valid NCRONTAB expression: {exc}") from None


class RefreshScheduleIn(InputModel):
    kind: Literal["refresh"]


class CronScheduleIn(InputModel):
    kind: Literal["cron"]
    expression: Annotated[str, StringConstraints(min_length=1), AfterValidator(_ncrontab)] = Field(
        description="NCRONTAB, 6 fields, UTC: second minute hour day month day-of-week "
        "(day and day-of-week must both match)",
        examples=["0 30 6 * * Mon-Fri"],
    )


class OffScheduleIn(InputModel):
    kind: Literal["off"]


ScheduleIn = Annotated[
    RefreshScheduleIn | CronScheduleIn | OffScheduleIn, Field(discriminator="kind")
]


class ScheduleOut(OutputModel):
    kind: ScheduleKind
    expression: str | None = None


def schedule_from_input(value: RefreshScheduleIn | CronScheduleIn | OffScheduleIn) -> Schedule:
    if isinstance(value, CronScheduleIn):
        return Schedule(ScheduleKind.CRON, value.expression)
    return Schedule(ScheduleKind(value.kind))


def schedule_input_dict(schedule: Schedule) -> dict[str, Any]:
    if schedule.kind is ScheduleKind.CRON:
        return {"kind": schedule.kind.value, "expression": schedule.expression}
    return {"kind": schedule.kind.value}


class ExportSourceIn(InputModel):
    kind: SourceKind = Field(
        default=SourceKind.EMBEDDED,
        description="'embedded' (segments and customers uploaded here) or 'customer-insights' "
        "(CI-D's tables in Dataverse, read at the start of every run)",
    )
    connection_id: ResourceId | None = Field(
        default=None,
        description="customer-insights only: read CI-D through this connection instead of the "
        "export's own (when CI-D shares data with another environment)",
    )


class ExportSourceOut(OutputModel):
    kind: SourceKind
    connection_id: str | None = None


class ExportIn(InputModel):
    display_name: DisplayName
    connection_id: ResourceId
    segments: Annotated[list[SegmentName], Field(min_length=1, max_length=MAX_SEGMENTS)]
    source: ExportSourceIn = Field(default_factory=ExportSourceIn)
    mode: ExportMode = ExportMode.MIRROR
    enabled: bool = True
    list_name: ListNameTemplate = Field(
        default="{segment}",
        description="marketing list name; {segment} and {export} are replaced; "
        f"the rendered name must be at most {LIST_NAME_MAX} characters",
    )
    schedule: ScheduleIn = Field(
        default_factory=lambda: RefreshScheduleIn(kind="refresh"),
        description="refresh (default: every scheduled refresh, REFRESH_SCHEDULE), cron (its "
        "own NCRONTAB expression) or off (on demand only)",
    )


class ExportPatch(InputModel):
    """JSON merge patch of an export; the merged export is validated as a whole."""

    display_name: str | None = None
    connection_id: str | None = None
    segments: list[Any] | None = None
    source: dict[str, Any] | None = None
    mode: str | None = None
    enabled: bool | None = None
    list_name: str | None = None
    schedule: dict[str, Any] | None = None


class ExportOut(AuditOut):
    id: str
    display_name: str
    connection_id: str | None
    detached: bool
    segments: list[str]
    source: ExportSourceOut
    mode: ExportMode
    enabled: bool
    list_name: str
    schedule: ScheduleOut
    your_permissions: Literal["edit", "view"] = Field(
        description="whether the caller may change this export (contributors: only on "
        "connections usable by contributors)"
    )


class ExportList(OutputModel):
    items: list[ExportOut]


def export_source_dict(source: ExportSource) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": source.kind.value}
    if source.connection_id is not None:
        out["connectionId"] = source.connection_id
    return out


def export_source_from(body: ExportSourceIn) -> ExportSource:
    return ExportSource(kind=body.kind, connection_id=body.connection_id)


def export_input_dict(export: Export) -> dict[str, Any]:
    return {
        "displayName": export.display_name,
        "connectionId": export.connection_id,
        "segments": list(export.segments),
        "source": export_source_dict(export.source),
        "mode": export.mode.value,
        "enabled": export.enabled,
        "listName": export.list_name,
        "schedule": schedule_input_dict(export.schedule),
    }


def export_out(export: Export, *, can_edit: bool) -> ExportOut:
    return ExportOut(
        id=export.id,
        display_name=export.display_name,
        connection_id=export.connection_id,
        detached=export.detached,
        segments=list(export.segments),
        source=ExportSourceOut(kind=export.source.kind, connection_id=export.source.connection_id),
        mode=export.mode,
        enabled=export.enabled,
        list_name=export.list_name,
        schedule=ScheduleOut(kind=export.schedule.kind, expression=export.schedule.expression),
        your_permissions="edit" if can_edit else "view",
        **_audit(export.audit),
    )


# --- runs --------------------------------------------------------------------------------------


class SegmentProgressOut(OutputModel):
    phase: str
    done: int
    total: int


class SourceReadOut(OutputModel):
    kind: str = Field(description="embedded or customer-insights")
    member_rows: int = Field(default=0, description="membership rows read")
    lookup_rows: int = Field(default=0, description="customer/profile/key rows read")
    lookup_shared_rows: int = Field(
        default=0,
        description="embedded: members' rows answered from a read another export of the same "
        "worker process made at the same revision of the customer table (not read again)",
    )
    lookup_strategy: str = Field(
        default="",
        description="embedded: how the customer table's hash buckets were read "
        "(point reads, scans, or shared)",
    )
    watermark: str | None = Field(
        default=None,
        description="newest change seen (CI-D: max modifiedon of the membership rows; "
        "embedded: when the segment was uploaded)",
    )
    requests: int = 0


class SegmentResultOut(OutputModel):
    segment: str
    list_id: str | None = None
    list_name: str | None = None
    members: int = 0
    matched: int = 0
    left_out: dict[str, int] = Field(default_factory=dict, description="reason -> count")
    added: int = 0
    removed: int = 0
    failed: int = 0
    list_created: bool = False
    list_recreated: bool = False
    complete: bool = False
    error: str | None = None
    progress: SegmentProgressOut
    source: SourceReadOut | None = Field(
        default=None, description="what this segment's members were read from"
    )


class NotificationResultOut(OutputModel):
    target_id: str
    event: str
    delivered: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None
    at: str


class RunOut(OutputModel):
    id: str
    export_id: str
    trigger: str
    status: str
    dry_run: bool
    requested_by: str
    queued_at: str
    started_at: str | None = None
    finished_at: str | None = None
    segments: list[SegmentResultOut]
    error: str | None = None
    reason: str | None = None
    slices: int = 0
    cancel_requested: bool = False
    notifications: list[NotificationResultOut] = Field(
        default_factory=list, description="notifications sent after this run and how they went"
    )


class RunPage(OutputModel):
    items: list[RunOut]
    next_link: str | None = None


class RunAllOut(OutputModel):
    items: list[RunOut]


class RejectionOut(OutputModel):
    segment: str
    customer_id: str
    reason: str
    contact_id: str | None = None
    detail: str = ""


class RejectionPage(OutputModel):
    items: list[RejectionOut]
    next_link: str | None = None


# --- segments and customers --------------------------------------------------------------------


class SegmentMembersIn(InputModel):
    members: list[str]


class MeOut(OutputModel):
    name: str
    role: Literal["Admin", "Contributor", "Viewer"]
    auth_mode: str


class HealthOut(OutputModel):
    status: Literal["ok"]


CUSTOMER_ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]{1,256}$"


class SegmentInfoOut(OutputModel):
    name: str
    members: int = Field(description="number of distinct members (customer IDs)")
    duplicates: int = Field(default=0, description="duplicate ids dropped by the last upload")
    updated_at: str = ""


class SegmentDetail(SegmentInfoOut):
    member_ids: list[str] | None = Field(
        default=None, description="a page of members, with ?members=true"
    )
    next_link: str | None = None


class SegmentList(OutputModel):
    items: list[SegmentInfoOut]


class SourceSegmentOut(OutputModel):
    name: str
    members: int


class SourceSegmentList(OutputModel):
    kind: SourceKind
    connection_id: str | None = None
    items: list[SourceSegmentOut]


def segment_info_out(info: Any) -> SegmentInfoOut:
    return SegmentInfoOut(
        name=info.name,
        members=info.members,
        duplicates=info.duplicates,
        updated_at=info.updated_at,
    )


class ImportReportOut(OutputModel):
    rows: int = Field(description="rows received")
    upserted: int = Field(description="customers written (all rows, or none on any error)")


class CustomerImportOut(OutputModel):
    """A background customer import (POST /api/customer-imports) and its progress."""

    id: str
    state: Literal["queued", "running", "succeeded", "failed"]
    rows: int = Field(description="rows in the file (all valid: a bad file is refused whole)")
    rows_written: int = Field(description="rows written to the customers table so far")
    chunks: int = Field(description="staged chunks (the worker checkpoints after each)")
    chunks_written: int
    merge: bool = Field(description="rows merge into stored customers instead of replacing")
    created_by: str
    created_at: str
    updated_at: str
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = Field(
        default=None, description="why it failed, or the last failure it is retrying"
    )
    deliveries: int = Field(description="queue deliveries that worked on it")


class CustomerImportList(OutputModel):
    items: list[CustomerImportOut]


# --- notification targets ----------------------------------------------------------------------


class NotificationTargetIn(InputModel):
    display_name: DisplayName
    format: NotificationFormat = Field(
        description="teams (a Teams workflow webhook), slack (incoming webhook) or json (generic, "
        "signed with HMAC-SHA256 over the body)"
    )
    url_setting: SettingName = Field(
        description="NAME of the app setting (or Key Vault reference) holding the webhook URL; "
        "never the URL itself"
    )
    secret_setting: SettingName | None = Field(
        default=None,
        description="json only (required there): NAME of the app setting with the HMAC key",
    )
    exports: Annotated[list[ResourceId], Field(max_length=500)] | None = Field(
        default=None, description="export ids this target hears about; null or absent: all"
    )
    enabled: bool = True


class NotificationTargetPatch(InputModel):
    """JSON merge patch of a target; the merged target is validated as a whole."""

    display_name: str | None = None
    format: str | None = None
    url_setting: str | None = None
    secret_setting: str | None = None
    exports: list[Any] | None = None
    enabled: bool | None = None


class NotificationTargetOut(AuditOut):
    id: str
    display_name: str
    format: NotificationFormat
    url_setting: str
    secret_setting: str | None = None
    exports: list[str] | None
    enabled: bool


class NotificationTargetList(OutputModel):
    items: list[NotificationTargetOut]


def notification_target_input_dict(target: NotificationTarget) -> dict[str, Any]:
    document: dict[str, Any] = {
        "displayName": target.display_name,
        "format": target.format.value,
        "urlSetting": target.url_setting,
        "enabled": target.enabled,
    }
    if target.secret_setting:
        document["secretSetting"] = target.secret_setting
    if target.export_ids is not None:
        document["exports"] = list(target.export_ids)
    return document


def notification_target_out(target: NotificationTarget) -> NotificationTargetOut:
    return NotificationTargetOut(
        id=target.id,
        display_name=target.display_name,
        format=target.format,
        url_setting=target.url_setting,
        secret_setting=target.secret_setting,
        exports=None if target.export_ids is None else list(target.export_ids),
        enabled=target.enabled,
        **_audit(target.audit),
    )
