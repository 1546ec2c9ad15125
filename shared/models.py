"""Domain records shared by the store, the API, the runs worker and the Sales sync module.

Plain frozen-ish dataclasses (no I/O, no azure imports). The API has its own pydantic schemas
(``shared/api/schemas.py``) that convert to and from these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class UsableBy(StrEnum):
    ADMINISTRATORS = "administrators"
    ADMINISTRATORS_AND_CONTRIBUTORS = "administrators-and-contributors"


class CredentialKind(StrEnum):
    CLIENT_SECRET = "client-secret"
    MANAGED_IDENTITY = "managed-identity"
    DELEGATED = "delegated"  # a signed-in Sales user (auth code + PKCE; encrypted token cache)


class ContactIdSource(StrEnum):
    COLUMN = "column"  # the column named by the connection's contact-ID field
    ALTERNATE_KEY = "alternate-key"  # CI-D's msdynci_alternatekeys rows with entity contact


class SourceKind(StrEnum):
    EMBEDDED = "embedded"  # segments and customer rows uploaded to this app
    CUSTOMER_INSIGHTS = "customer-insights"  # CI-D's tables in Dataverse, read at run start


@dataclass(frozen=True, slots=True)
class ExportSource:
    kind: SourceKind = SourceKind.EMBEDDED
    connection_id: str | None = None  # CI-D read through another connection (default: export's)


@dataclass(frozen=True, slots=True)
class SourceRead:
    """What a run read for one segment: answers "which data did you use?"."""

    kind: str  # SourceKind value
    member_rows: int = 0  # membership rows read (embedded: member ids; CI-D: membership rows)
    lookup_rows: int = 0  # customer / profile / key rows read to find contact ids
    lookup_shared_rows: int = 0  # embedded: answered from another export's read (same process)
    lookup_strategy: str = ""  # embedded: how the customer buckets were read
    watermark: str | None = None  # newest change seen (CI-D: max modifiedon; embedded: upload)
    requests: int = 0  # requests the read took (Table Storage or Dataverse)


class ExportMode(StrEnum):
    MIRROR = "mirror"  # the list equals the matched segment: adds and removes
    ADDITIVE = "additive"  # adds only; members who left the segment stay


class ScheduleKind(StrEnum):
    REFRESH = "refresh"  # run on every scheduled refresh (REFRESH_SCHEDULE)
    CRON = "cron"  # run on the export's own NCRONTAB expression
    OFF = "off"  # only on demand


@dataclass(frozen=True, slots=True)
class Schedule:
    kind: ScheduleKind = ScheduleKind.REFRESH
    expression: str | None = None  # NCRONTAB (6 fields, UTC); only for kind cron


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIALLY_SUCCEEDED = "partially-succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELED = "canceled"

    @property
    def is_active(self) -> bool:
        return self in (RunStatus.QUEUED, RunStatus.RUNNING)

    @property
    def is_final(self) -> bool:
        return not self.is_active


class Trigger(StrEnum):
    SCHEDULE = "schedule"
    ON_DEMAND = "on-demand"


class Role(StrEnum):
    ADMIN = "Admin"
    CONTRIBUTOR = "Contributor"
    VIEWER = "Viewer"


class RejectionReason(StrEnum):
    """Why a segment member was left out of the marketing list."""

    NO_CUSTOMER_RECORD = "no-customer-record"  # customer id not in the unified customer table
    EMPTY_CONTACT_ID = "empty-contact-id"  # the mapped contact-ID field is empty or missing
    MALFORMED_CONTACT_ID = "malformed-contact-id"  # the field does not hold a GUID
    CONTACT_NOT_FOUND = "contact-not-found"  # no such contact in Sales
    CONTACT_INACTIVE = "contact-inactive"  # the contact exists but statecode is not Active
    DUPLICATE_CONTACT = "duplicate-contact"  # another member already maps to the same contact
    REJECTED_BY_SALES = "rejected-by-sales"  # Sales refused this member (e.g. deleted meanwhile)


@dataclass(frozen=True, slots=True)
class Rejection:
    customer_id: str
    reason: RejectionReason
    contact_id: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Credential:
    kind: CredentialKind
    tenant_id: str | None = None
    client_id: str | None = None
    # Name of the app setting that holds the client secret (may itself be a Key Vault reference).
    # The secret value is never stored.
    secret_setting: str | None = None


class SignInStatus(StrEnum):
    SIGNED_IN = "signed-in"
    SIGN_IN_NEEDED = "sign-in-needed"


@dataclass(slots=True)
class SignIn:
    """A delegated connection's sign-in: who, when, and its msal token cache, ENCRYPTED (the
    cipher text only; see shared/sales/tokencache.py). Kept apart from the connection so token
    rotation never changes the connection's ETag."""

    connection_id: str
    account: str = ""  # the signed-in user's name (preferred_username)
    signed_in_at: str = ""  # ISO 8601 UTC
    status: SignInStatus = SignInStatus.SIGNED_IN
    reason: str = ""  # why sign-in is needed, in words
    encrypted_cache: str = ""
    etag: str | None = None


@dataclass(slots=True)
class Audit:
    created_by: str = ""
    created_at: str = ""  # ISO 8601 UTC
    updated_by: str = ""
    updated_at: str = ""


@dataclass(slots=True)
class Connection:
    id: str
    display_name: str
    server_address: str  # https://<org>.crm.dynamics.com (no trailing slash)
    credential: Credential
    contact_id_field: str  # customer-table column that holds the Dynamics 365 contact ID
    usable_by: UsableBy = UsableBy.ADMINISTRATORS
    # Where a Customer Insights source finds contact IDs: the profile column named by
    # contact_id_field ("column") or CI-D's alternate-key table, entity contact ("alternate-key").
    contact_id_source: ContactIdSource = ContactIdSource.COLUMN
    type: str = "dynamics365-sales"
    audit: Audit = field(default_factory=Audit)
    etag: str | None = None


@dataclass(slots=True)
class Export:
    id: str
    display_name: str
    connection_id: str | None  # None once detached from a deleted connection: it does not run
    segments: list[str]
    mode: ExportMode = ExportMode.MIRROR
    enabled: bool = True
    list_name: str = "{segment}"  # template; {segment} and {export} are replaced
    source: ExportSource = field(default_factory=ExportSource)
    audit: Audit = field(default_factory=Audit)
    etag: str | None = None
    schedule: Schedule = field(default_factory=Schedule)

    @property
    def detached(self) -> bool:
        return self.connection_id is None


@dataclass(slots=True)
class SegmentListState:
    """What later runs need to reuse the same marketing list for a segment (kept apart from the
    export resource so that worker writes never change the export's ETag)."""

    segment: str
    list_id: str
    list_name: str


@dataclass(slots=True)
class SegmentProgress:
    phase: str = "pending"  # pending, resolving, reading-list, validating, applying, done
    done: int = 0
    total: int = 0


@dataclass(slots=True)
class SegmentResult:
    segment: str
    list_id: str | None = None
    list_name: str | None = None
    members: int = 0  # customer ids in the segment
    matched: int = 0  # members that map to a valid, active contact
    left_out: dict[str, int] = field(default_factory=dict)  # RejectionReason value -> count
    added: int = 0
    removed: int = 0
    failed: int = 0
    list_created: bool = False
    list_recreated: bool = False
    complete: bool = False
    error: str | None = None
    progress: SegmentProgress = field(default_factory=SegmentProgress)
    source: SourceRead | None = None  # what this segment's members were read from
    # What the list held at the run's first complete read, before the run wrote anything to it:
    # desired members already in it and members to remove. added/removed are derived from
    # them once the segment is complete, so they stay exact however often the run was killed.
    baseline_kept: int | None = None
    baseline_undesired: int | None = None
    # The same two figures as the latest call read them (what earlier calls' writes left).
    read_kept: int | None = None
    read_undesired: int | None = None


class NotificationFormat(StrEnum):
    TEAMS = "teams"  # a Teams workflow ("When a Teams webhook request is received"): Adaptive Card
    SLACK = "slack"  # a Slack incoming webhook
    JSON = "json"  # generic JSON, signed with HMAC-SHA256 over the body


@dataclass(slots=True)
class NotificationTarget:
    """Where outcome changes are sent. The webhook URL (and the JSON signing secret) live in app
    settings NAMED here, like connection secrets: the table never holds them."""

    id: str
    display_name: str
    format: NotificationFormat
    url_setting: str
    secret_setting: str | None = None  # required for json: the HMAC key's app setting
    export_ids: list[str] | None = None  # None: every export
    enabled: bool = True
    audit: Audit = field(default_factory=Audit)
    etag: str | None = None

    def covers(self, export_id: str) -> bool:
        return self.enabled and (self.export_ids is None or export_id in self.export_ids)


@dataclass(slots=True)
class NotifyState:
    """The last outcome told to one target about one export (ETag-guarded)."""

    export_id: str
    target_id: str
    outcome: str = "ok"  # ok, failed, partially-succeeded
    reason_key: str = ""  # the normalised reason last told
    run_id: str = ""  # the run that last changed the state
    delivered: bool = True  # whether telling it worked (if not, the next alike run retries)
    etag: str | None = None


@dataclass(slots=True)
class NotificationResult:
    """One notification sent after a run (shared/notify): to which target, what, and how it went.
    Never holds the webhook URL (that lives only in the app setting the target names)."""

    target_id: str
    event: str  # failed, partially-succeeded, recovered
    delivered: bool
    attempts: int = 0
    status_code: int | None = None
    error: str | None = None
    at: str = ""  # ISO 8601 UTC of the last attempt


@dataclass(slots=True)
class Run:
    export_id: str
    id: str
    trigger: Trigger
    status: RunStatus = RunStatus.QUEUED
    dry_run: bool = False
    requested_by: str = ""
    queued_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    segments: list[SegmentResult] = field(default_factory=list)
    error: str | None = None
    reason: str | None = None  # why skipped / canceled, in words
    slices: int = 0
    cancel_requested: bool = False
    progress_at: str | None = None  # when a worker last saved the run (abandoned-run rule)
    attempted_slice: int = 0  # the slice whose starts slice_attempts counts
    slice_attempts: int = 0  # starts of attempted_slice (crash loops -> MAX_DEQUEUE_COUNT)
    requeues: int = 0  # times the abandoned-run rule queued the run again (shared/runs/sweeper)
    etag: str | None = None
    notifications: list[NotificationResult] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RunMessage:
    """The queue message that asks the worker to run (or continue) one run."""

    export_id: str
    run_id: str
    slice: int = 0
